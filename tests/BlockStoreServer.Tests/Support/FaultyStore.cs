using UblkCsi.Engine;
using UblkCsi.Stores;

namespace UblkCsi.BlockStoreServer.Tests.Support;

/// <summary>
/// A store whose volumes run a test hook before every write: the hook can block (to hold a write
/// in flight inside the server) or throw (to inject a backend failure). Everything else is the
/// wrapped store.
/// </summary>
public sealed class FaultyStore(IVolumeStore inner) : IVolumeStore, IVolumeWriterLeases
{
    /// <summary>Runs before each write with its offset; null for none.</summary>
    public Func<long, Task>? BeforeWrite { get; set; }

    /// <summary>Writes that reached the store with FUA set.</summary>
    public int FuaWrites => Volatile.Read(ref _fuaWrites);

    /// <summary>Flushes that reached the store.</summary>
    public int Flushes => Volatile.Read(ref _flushes);

    private int _fuaWrites;
    private int _flushes;

    public string Type => inner.Type;

    public string Description => "faulty " + inner.Description;

    public Task<VolumeInfo> CreateVolumeAsync(CreateVolumeRequest request, CancellationToken cancellationToken = default) => inner.CreateVolumeAsync(request, cancellationToken);

    public Task<bool> DeleteVolumeAsync(string volumeId, CancellationToken cancellationToken = default) => inner.DeleteVolumeAsync(volumeId, cancellationToken);

    public Task<VolumeInfo> GetVolumeAsync(string volumeId, CancellationToken cancellationToken = default) => inner.GetVolumeAsync(volumeId, cancellationToken);

    public Task<IReadOnlyList<VolumeInfo>> ListVolumesAsync(CancellationToken cancellationToken = default) => inner.ListVolumesAsync(cancellationToken);

    public Task<long> ExpandVolumeAsync(string volumeId, long newSizeBytes, CancellationToken cancellationToken = default) => inner.ExpandVolumeAsync(volumeId, newSizeBytes, cancellationToken);

    public Task<SnapshotInfo> CreateSnapshotAsync(string sourceVolumeId, string name, CancellationToken cancellationToken = default) => inner.CreateSnapshotAsync(sourceVolumeId, name, cancellationToken);

    public Task<bool> DeleteSnapshotAsync(string snapshotId, CancellationToken cancellationToken = default) => inner.DeleteSnapshotAsync(snapshotId, cancellationToken);

    public Task<SnapshotInfo> GetSnapshotAsync(string snapshotId, CancellationToken cancellationToken = default) => inner.GetSnapshotAsync(snapshotId, cancellationToken);

    public Task<IReadOnlyList<SnapshotInfo>> ListSnapshotsAsync(string? sourceVolumeId = null, CancellationToken cancellationToken = default) => inner.ListSnapshotsAsync(sourceVolumeId, cancellationToken);

    public Task<StoreCapacity> GetCapacityAsync(CancellationToken cancellationToken = default) => inner.GetCapacityAsync(cancellationToken);

    public async Task<IBlockBackend> OpenVolumeAsync(string volumeId, VolumeAccess access = VolumeAccess.ReadWrite, CancellationToken cancellationToken = default) =>
        new HookedBackend(await inner.OpenVolumeAsync(volumeId, access, cancellationToken), this);

    public Task<ulong> GetWriterGenerationAsync(string volumeId, CancellationToken cancellationToken = default) =>
        ((IVolumeWriterLeases)inner).GetWriterGenerationAsync(volumeId, cancellationToken);

    public Task<ulong> TakeWriterLeaseAsync(string volumeId, CancellationToken cancellationToken = default) =>
        ((IVolumeWriterLeases)inner).TakeWriterLeaseAsync(volumeId, cancellationToken);

    public ValueTask DisposeAsync() => inner.DisposeAsync();

    private sealed class HookedBackend(IBlockBackend inner, FaultyStore owner) : IBlockBackend
    {
        public BlockBackendInfo Info => inner.Info;

        public ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken = default) => inner.ReadAsync(offset, buffer, cancellationToken);

        public async ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, BlockWriteFlags flags = BlockWriteFlags.None, CancellationToken cancellationToken = default)
        {
            if (owner.BeforeWrite is { } hook)
            {
                await hook(offset);
            }

            if ((flags & BlockWriteFlags.Fua) != 0)
            {
                Interlocked.Increment(ref owner._fuaWrites);
            }

            await inner.WriteAsync(offset, data, flags, cancellationToken);
        }

        public ValueTask FlushAsync(CancellationToken cancellationToken = default)
        {
            Interlocked.Increment(ref owner._flushes);
            return inner.FlushAsync(cancellationToken);
        }

        public ValueTask DiscardAsync(long offset, long length, CancellationToken cancellationToken = default) => inner.DiscardAsync(offset, length, cancellationToken);

        public ValueTask WriteZeroesAsync(long offset, long length, CancellationToken cancellationToken = default) => inner.WriteZeroesAsync(offset, length, cancellationToken);

        public ValueTask DisposeAsync() => inner.DisposeAsync();
    }
}
