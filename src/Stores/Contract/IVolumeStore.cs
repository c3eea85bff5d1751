using UblkCsi.Engine;

namespace UblkCsi.Stores;

/// <summary>
/// The control path of a store: where volumes and snapshots are created, found and removed. The data
/// path is <see cref="IBlockBackend"/>: <see cref="OpenVolumeAsync"/> returns one per attached volume.
/// </summary>
/// <remarks>
/// <para>
/// Designed for a stateless CSI controller. Every piece of metadata lives in the store itself (a JSON
/// sidecar per volume in the file store, a manifest object per volume in s3), so any controller
/// replica can answer any call.
/// </para>
/// <para>
/// Identity: a volume's or snapshot's ID is derived from its name by <see cref="VolumeIds.FromName"/>
/// and never changes. Creating twice with the same name is idempotent: the same size (and source)
/// returns the existing volume, a different size or source throws <see cref="StoreAlreadyExistsException"/>
/// (CSI ALREADY_EXISTS). Deleting something absent returns false (CSI treats it as success).
/// </para>
/// <para>
/// Errors are <see cref="StoreException"/>s whose <see cref="StoreException.Code"/> names the gRPC
/// status a CSI service should answer with. Messages never contain secrets.
/// </para>
/// <para>
/// Sizes: volume sizes are rounded up to <see cref="StoreLimits.SizeGranularity"/>. Stores are thin:
/// creating a volume reserves no space, so capacity shows as ENOSPC on writes when the backing space
/// runs out, except in stores with a fixed capacity (memory) where creation is refused with
/// <see cref="StoreErrorCode.ResourceExhausted"/>.
/// </para>
/// <para>
/// Single writer: a volume is opened read-write by at most one process at a time (the CSI controller
/// grants single-node attach: ReadWriteOnce / SINGLE_NODE_WRITER). Stores do not arbitrate between two
/// writers; the s3 store in particular would lose data if two nodes wrote the same volume.
/// </para>
/// <para>
/// Snapshots are independent of their source: deleting a volume leaves its snapshots usable, and a
/// volume can be created from a snapshot whose source is gone. A snapshot captures what was durable
/// (flushed) in the source when it was taken; the caller quiesces the filesystem if it needs more.
/// </para>
/// </remarks>
public interface IVolumeStore : IAsyncDisposable
{
    /// <summary>The store type this instance was opened as ("file", "s3", "memory", "null", ...).</summary>
    string Type { get; }

    /// <summary>
    /// Where this store lives, without secrets: safe to log and to persist (e.g. "file root=/srv/vols").
    /// </summary>
    string Description { get; }

    /// <summary>
    /// Creates a volume, or returns the existing one when a volume of that name already exists with the
    /// same size and source. With a source the new volume starts as a copy of it (copy-on-write where
    /// the store can); <see cref="CreateVolumeRequest.SizeBytes"/> 0 then means "the source's size".
    /// </summary>
    /// <exception cref="StoreParameterException">Name or size invalid.</exception>
    /// <exception cref="StoreAlreadyExistsException">Same name, different size or source.</exception>
    /// <exception cref="StoreNotFoundException">The source does not exist.</exception>
    /// <exception cref="StoreOutOfRangeException">Size above the maximum or below the source's size.</exception>
    /// <exception cref="StoreCapacityException">The store cannot hold another volume of this size.</exception>
    Task<VolumeInfo> CreateVolumeAsync(CreateVolumeRequest request, CancellationToken cancellationToken = default);

    /// <summary>Deletes a volume (not its snapshots). Returns false when it did not exist.</summary>
    Task<bool> DeleteVolumeAsync(string volumeId, CancellationToken cancellationToken = default);

    /// <summary>Describes a volume.</summary>
    /// <exception cref="StoreNotFoundException">No such volume.</exception>
    Task<VolumeInfo> GetVolumeAsync(string volumeId, CancellationToken cancellationToken = default);

    /// <summary>Every volume, ordered by ID (stable order for CSI list paging).</summary>
    Task<IReadOnlyList<VolumeInfo>> ListVolumesAsync(CancellationToken cancellationToken = default);

    /// <summary>
    /// Grows a volume to at least <paramref name="newSizeBytes"/> and returns the size it now has.
    /// Asking for a size at or below the current one changes nothing and returns the current size
    /// (volumes never shrink). An open volume keeps the size it was opened with until reopened.
    /// </summary>
    /// <exception cref="StoreNotFoundException">No such volume.</exception>
    /// <exception cref="StoreOutOfRangeException">Above the store's maximum volume size.</exception>
    Task<long> ExpandVolumeAsync(string volumeId, long newSizeBytes, CancellationToken cancellationToken = default);

    /// <summary>
    /// Takes a snapshot of a volume, or returns the existing snapshot of that name when it was taken of
    /// the same source. Snapshots are ready when this returns.
    /// </summary>
    /// <exception cref="StoreNotFoundException">No such source volume.</exception>
    /// <exception cref="StoreAlreadyExistsException">A snapshot of that name exists for another source.</exception>
    Task<SnapshotInfo> CreateSnapshotAsync(string sourceVolumeId, string name, CancellationToken cancellationToken = default);

    /// <summary>Deletes a snapshot. Returns false when it did not exist.</summary>
    Task<bool> DeleteSnapshotAsync(string snapshotId, CancellationToken cancellationToken = default);

    /// <summary>Describes a snapshot.</summary>
    /// <exception cref="StoreNotFoundException">No such snapshot.</exception>
    Task<SnapshotInfo> GetSnapshotAsync(string snapshotId, CancellationToken cancellationToken = default);

    /// <summary>Snapshots ordered by ID, all of them or only those taken of <paramref name="sourceVolumeId"/>.</summary>
    Task<IReadOnlyList<SnapshotInfo>> ListSnapshotsAsync(string? sourceVolumeId = null, CancellationToken cancellationToken = default);

    /// <summary>Space left for new volumes and the volume size limits (CSI GetCapacity).</summary>
    Task<StoreCapacity> GetCapacityAsync(CancellationToken cancellationToken = default);

    /// <summary>
    /// Opens a volume's data path. The caller owns the result and disposes it; disposing flushes
    /// nothing implicitly beyond what the store documents (call FlushAsync first for durability).
    /// </summary>
    /// <exception cref="StoreNotFoundException">No such volume.</exception>
    Task<IBlockBackend> OpenVolumeAsync(string volumeId, VolumeAccess access = VolumeAccess.ReadWrite, CancellationToken cancellationToken = default);
}

/// <summary>How a volume is opened.</summary>
public enum VolumeAccess
{
    /// <summary>Reads and writes; at most one read-write opener per volume (single-writer model).</summary>
    ReadWrite,

    /// <summary>Reads only; writes, discards and write-zeroes fail with EROFS.</summary>
    ReadOnly,
}
