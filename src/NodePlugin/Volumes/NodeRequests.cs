using UblkCsi.NodePlugin.State;
using UblkCsi.Stores;

namespace UblkCsi.NodePlugin.Volumes;

/// <summary>A validated NodeStageVolume.</summary>
/// <param name="VolumeId">The CSI volume_id.</param>
/// <param name="Handle">The volume_id split into store locator and store ID.</param>
/// <param name="Context">The store it lives in.</param>
/// <param name="StagingPath">Where to stage it (validated, absolute, inside the kubelet directory).</param>
/// <param name="Access">Filesystem or block.</param>
/// <param name="FsType">ext4 or xfs (mount only; empty for block).</param>
/// <param name="MountFlags">Extra mount options (mount only).</param>
/// <param name="VolumeMountGroup">Group ID to own the filesystem root (mount only).</param>
/// <param name="ReadOnly">Open the volume read-only (a reader-only access mode).</param>
public sealed record StageRequest(
    string VolumeId,
    VolumeHandle Handle,
    VolumeContext Context,
    string StagingPath,
    StagedAccess Access,
    string FsType,
    IReadOnlyList<string> MountFlags,
    string? VolumeMountGroup,
    bool ReadOnly);

/// <summary>A validated NodePublishVolume.</summary>
public sealed record PublishRequest(string VolumeId, string StagingPath, string TargetPath, StagedAccess Access, bool ReadOnly);

/// <summary>What NodeGetVolumeStats reports.</summary>
/// <param name="TotalBytes">Size of the filesystem or device.</param>
/// <param name="AvailableBytes">Free bytes for unprivileged users (null for block).</param>
/// <param name="UsedBytes">Used bytes (null for block).</param>
/// <param name="TotalInodes">Inodes (null for block).</param>
/// <param name="FreeInodes">Free inodes (null for block).</param>
/// <param name="UsedInodes">Used inodes (null for block).</param>
/// <param name="Problem">Null when healthy, else why the volume is abnormal.</param>
public sealed record VolumeStatistics(long TotalBytes, long? AvailableBytes, long? UsedBytes, long? TotalInodes, long? FreeInodes, long? UsedInodes, string? Problem);
