namespace UblkCsi.Stores;

/// <summary>What a new volume starts from.</summary>
public enum VolumeSourceKind
{
    /// <summary>A snapshot: the volume is a restore of it.</summary>
    Snapshot,

    /// <summary>Another volume: the volume is a clone of its durable content.</summary>
    Volume,
}

/// <summary>The content source of a new volume (CSI VolumeContentSource).</summary>
public sealed record VolumeSource(VolumeSourceKind Kind, string Id)
{
    public static VolumeSource FromSnapshot(string snapshotId) => new(VolumeSourceKind.Snapshot, snapshotId);

    public static VolumeSource FromVolume(string volumeId) => new(VolumeSourceKind.Volume, volumeId);
}

/// <summary>Arguments of <see cref="IVolumeStore.CreateVolumeAsync"/>.</summary>
/// <param name="Name">Caller's unique name (CSI CreateVolumeRequest.name); the ID derives from it.</param>
/// <param name="SizeBytes">Requested size; rounded up to <see cref="StoreLimits.SizeGranularity"/>. 0 with a source: the source's size.</param>
/// <param name="Source">Optional snapshot or volume to start from.</param>
public sealed record CreateVolumeRequest(string Name, long SizeBytes, VolumeSource? Source = null);

/// <summary>A volume as the store describes it.</summary>
/// <param name="Id">Stable ID (see <see cref="VolumeIds"/>).</param>
/// <param name="Name">The name it was created with.</param>
/// <param name="SizeBytes">Current size in bytes.</param>
/// <param name="CreatedUtc">When it was created.</param>
/// <param name="Source">What it was created from, if anything.</param>
public sealed record VolumeInfo(string Id, string Name, long SizeBytes, DateTimeOffset CreatedUtc, VolumeSource? Source);

/// <summary>A snapshot as the store describes it (CSI Snapshot).</summary>
/// <param name="Id">Stable ID (see <see cref="VolumeIds"/>).</param>
/// <param name="Name">The name it was created with.</param>
/// <param name="SourceVolumeId">The volume it was taken of (which may since have been deleted).</param>
/// <param name="SizeBytes">Size of the source when taken; the minimum size of a volume restored from it.</param>
/// <param name="CreatedUtc">When it was taken (CSI creation_time).</param>
/// <param name="ReadyToUse">True when it can be used as a volume source (CSI ready_to_use).</param>
public sealed record SnapshotInfo(string Id, string Name, string SourceVolumeId, long SizeBytes, DateTimeOffset CreatedUtc, bool ReadyToUse);

/// <summary>Space and size limits (CSI GetCapacityResponse).</summary>
/// <param name="AvailableBytes">Space left for volume data; null when the store cannot tell (object stores).</param>
/// <param name="MaximumVolumeSizeBytes">Largest volume the store creates.</param>
/// <param name="MinimumVolumeSizeBytes">Smallest volume the store creates.</param>
public sealed record StoreCapacity(long? AvailableBytes, long MaximumVolumeSizeBytes, long MinimumVolumeSizeBytes);

/// <summary>Limits shared by every store.</summary>
public static class StoreLimits
{
    /// <summary>Volume sizes are multiples of this (a page, and the largest logical block size).</summary>
    public const long SizeGranularity = 4096;

    /// <summary>Data-path offsets and lengths are multiples of this (one sector); others fail with EINVAL.</summary>
    public const int IoAlignment = 512;

    /// <summary>Largest volume any store creates: 64 TiB.</summary>
    public const long MaximumVolumeSizeBytes = 64L << 40;

    /// <summary>Rounds a requested size up to <see cref="SizeGranularity"/>.</summary>
    public static long RoundUpSize(long sizeBytes) => checked((sizeBytes + SizeGranularity - 1) / SizeGranularity * SizeGranularity);
}
