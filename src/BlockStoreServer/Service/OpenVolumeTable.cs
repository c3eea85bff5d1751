using System.Collections.Concurrent;
using UblkCsi.Engine;
using UblkCsi.Stores;

namespace UblkCsi.BlockStoreServer.Service;

/// <summary>
/// The volumes a block-store server has open, by ID. The protocol is sessionless, so a volume is
/// opened on its first data-path call and kept open; each call holds a reference while it runs, so
/// a volume removed from the table (deleted, reopened) closes only when its last call finishes.
/// Looking up an open volume takes no lock and allocates nothing.
/// </summary>
internal sealed class OpenVolumeTable(IVolumeStore store) : IAsyncDisposable
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

    /// <summary>Forgets a volume (it was deleted); its handle closes once in-flight calls are done.</summary>
    public void Remove(string volumeId)
    {
        if (_volumes.TryRemove(volumeId, out var open))
        {
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

            var backend = await store.OpenVolumeAsync(volumeId, VolumeAccess.ReadWrite, cancellationToken).ConfigureAwait(false);
            _volumes.TryGetValue(volumeId, out var replaced);

            // A reopened volume keeps its fence: a retry must still wait for mutations running on the old handle.
            var open = new OpenVolume(volumeId, backend, replaced?.Fence ?? new MutationFence());
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
