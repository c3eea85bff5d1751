using System.Collections.Concurrent;
using UblkCsi.Engine;
using UblkCsi.Stores;

namespace UblkCsi.BlockStoreServer.Service;

/// <summary>
/// The volumes a block-store server has open, by ID. The protocol is sessionless, so a volume is
/// opened on its first data-path call and kept open; each call holds a reference while it runs, so
/// a volume removed from the table (deleted, reopened) closes only when its last call finishes.
/// Looking up an open volume takes no lock and allocates nothing. Each volume's fence starts from the
/// writer generation the store recorded, so a restarted server still refuses superseded writers.
/// </summary>
internal sealed class OpenVolumeTable(IVolumeStore store, IVolumeWriterLeases leases) : IAsyncDisposable
{
    private readonly ConcurrentDictionary<string, OpenVolume> _volumes = new(StringComparer.Ordinal);
    private readonly SemaphoreSlim _opening = new(1, 1);
    private bool _disposed;

    /// <summary>
    /// The open volume, opening it when needed. <paramref name="reopen"/> replaces a cached handle
    /// with a fresh one (a client opening the volume must see its current size).
    /// Release the result with <see cref="OpenVolume.Release"/>.
    /// </summary>
    /// <exception cref="StoreException">From the store: bad ID, no such volume.</exception>
    public ValueTask<OpenVolume> AcquireAsync(string volumeId, bool reopen, CancellationToken cancellationToken)
    {
        if (!reopen && _volumes.TryGetValue(volumeId, out var open) && open.TryAddReference())
        {
            return new ValueTask<OpenVolume>(open);
        }

        return OpenAsync(volumeId, reopen, cancellationToken);
    }

    /// <summary>
    /// Takes the writer lease of an open volume for a new read-write opener: the store records the next
    /// generation durably, the fence refuses older writers from then on, and every mutation admitted
    /// before has finished when this returns. Returns the new generation.
    /// </summary>
    /// <exception cref="StoreException">From the store: no such volume.</exception>
    /// <exception cref="TimeoutException">Earlier mutations were still running after <paramref name="drainTimeout"/>.</exception>
    public async Task<ulong> TakeWriterLeaseAsync(OpenVolume volume, TimeSpan drainTimeout, CancellationToken cancellationToken)
    {
        ulong generation;

        // With opens: two openers must not interleave their record and fence updates.
        await _opening.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            generation = await leases.TakeWriterLeaseAsync(volume.VolumeId, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _opening.Release();
        }

        if (!await volume.Fence.TakeOverAsync(generation, drainTimeout, cancellationToken).ConfigureAwait(false))
        {
            throw new TimeoutException($"volume '{volume.VolumeId}': mutations of the previous writer were still running after {drainTimeout.TotalSeconds:0} s");
        }

        return generation;
    }

    /// <summary>Forgets a volume (it was deleted); its handle closes once in-flight calls are done.</summary>
    public void Remove(string volumeId)
    {
        if (_volumes.TryRemove(volumeId, out var open))
        {
            open.MarkDeleted();
            open.Release();
        }
    }

    /// <summary>Makes every open volume durable and closes it (graceful shutdown).</summary>
    public async ValueTask DisposeAsync()
    {
        await _opening.WaitAsync().ConfigureAwait(false);
        try
        {
            _disposed = true;
            foreach (var id in _volumes.Keys)
            {
                if (_volumes.TryRemove(id, out var open))
                {
                    try
                    {
                        await open.Backend.FlushAsync().ConfigureAwait(false);
                    }
                    finally
                    {
                        open.Release();
                    }
                }
            }
        }
        finally
        {
            _opening.Release();
        }
    }

    private async ValueTask<OpenVolume> OpenAsync(string volumeId, bool reopen, CancellationToken cancellationToken)
    {
        // Opens are rare (once per volume per server lifetime, plus client opens): one at a time
        // keeps two concurrent first calls from opening the same image twice.
        await _opening.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (!reopen && _volumes.TryGetValue(volumeId, out var existing) && existing.TryAddReference())
            {
                return existing;
            }

            _volumes.TryGetValue(volumeId, out var replaced);
            var fence = replaced?.Fence ?? new MutationFence(await leases.GetWriterGenerationAsync(volumeId, cancellationToken).ConfigureAwait(false));
            var backend = await store.OpenVolumeAsync(volumeId, VolumeAccess.ReadWrite, cancellationToken).ConfigureAwait(false);

            // A reopened volume keeps its fence: a retry must still wait for mutations running on the old
            // handle, and streams still on the old handle must see the current writer generation.
            var open = new OpenVolume(volumeId, backend, fence);
            open.TryAddReference(); // the caller's reference; the table holds the initial one
            _volumes[volumeId] = open;
            replaced?.Release();
            return open;
        }
        finally
        {
            _opening.Release();
        }
    }
}

/// <summary>One open volume of the server with its reference count and mutation fence.</summary>
internal sealed class OpenVolume(string volumeId, IBlockBackend backend, MutationFence fence)
{
    // Starts at 1: the table's reference.
    private int _references = 1;

    public string VolumeId { get; } = volumeId;

    public IBlockBackend Backend { get; } = backend;

    public MutationFence Fence { get; } = fence;

    /// <summary>The volume was deleted: holders that keep it (streams) must stop serving it.</summary>
    public bool IsDeleted => Volatile.Read(ref _deleted);

    private bool _deleted;

    public void MarkDeleted() => Volatile.Write(ref _deleted, true);

    /// <summary>Takes a reference unless the volume is already closing.</summary>
    public bool TryAddReference()
    {
        var current = Volatile.Read(ref _references);
        while (current > 0)
        {
            var seen = Interlocked.CompareExchange(ref _references, current + 1, current);
            if (seen == current)
            {
                return true;
            }

            current = seen;
        }

        return false;
    }

    /// <summary>Drops a reference; the last one closes the backend.</summary>
    public void Release()
    {
        if (Interlocked.Decrement(ref _references) == 0)
        {
            // Closing a file handle does not block for long; callers need not wait for it.
            _ = Backend.DisposeAsync().AsTask();
        }
    }
}
