using System.Text.Json.Serialization;

namespace UblkCsi.NodePlugin.State;

/// <summary>How a staged volume is presented: a filesystem or the raw block device.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<StagedAccess>))]
public enum StagedAccess
{
    /// <summary>A filesystem mounted at the staging path.</summary>
    Mount,

    /// <summary>The block device itself; nothing is mounted at the staging path.</summary>
    Block,
}

/// <summary>
/// What the node plugin knows about one staged volume, kept in its state directory so a new plugin
/// process can adopt the volume's ublk device without a call from kubelet. Holds no secrets (those
/// are kept apart, see <see cref="StagedVolumeStore"/>).
/// </summary>
/// <param name="VolumeId">The CSI volume_id.</param>
/// <param name="StoreType">The store type from the volume_context.</param>
/// <param name="StoreParameters">The store's parameters from the volume_context (secret-free by contract).</param>
/// <param name="StoreVolumeId">The ID the store knows the volume by.</param>
/// <param name="StagingPath">The staging_target_path kubelet gave.</param>
/// <param name="Access">Filesystem or block.</param>
/// <param name="FsType">The filesystem type (mount only).</param>
/// <param name="MountFlags">The capability's mount flags (mount only).</param>
/// <param name="VolumeMountGroup">The capability's volume_mount_group (mount only), applied as the filesystem root's group.</param>
/// <param name="ReadOnly">The volume was opened read-only (a reader-only access mode).</param>
/// <param name="DeviceId">N of /dev/ublkbN.</param>
/// <param name="SizeBytes">The device size when it was created.</param>
/// <param name="BootId">The kernel boot the device belongs to; a record of another boot names no live device.</param>
/// <param name="StagedAt">When the volume was staged.</param>
public sealed record StagedVolumeRecord(
    string VolumeId,
    string StoreType,
    IReadOnlyDictionary<string, string> StoreParameters,
    string StoreVolumeId,
    string StagingPath,
    StagedAccess Access,
    string? FsType,
    IReadOnlyList<string> MountFlags,
    string? VolumeMountGroup,
    bool ReadOnly,
    int DeviceId,
    long SizeBytes,
    string BootId,
    DateTimeOffset StagedAt)
{
    /// <summary>Record format version.</summary>
    public int Version { get; init; } = 1;

    /// <summary>The QoS limits from the volume_context (parameter form), or null for none.</summary>
    public IReadOnlyDictionary<string, string>? QosParameters { get; init; }

    /// <summary>When the last plugin process handed the device over (SIGTERM), if it did.</summary>
    public DateTimeOffset? ReleasedAt { get; init; }

    /// <summary>How many plugin processes adopted the device after a predecessor.</summary>
    public long Recoveries { get; init; }

    /// <summary>How long the device was without a server at its last adoption.</summary>
    public double? LastAdoptionGapSeconds { get; init; }

    /// <summary>/dev/ublkbN.</summary>
    [JsonIgnore]
    public string DevicePath => $"/dev/ublkb{DeviceId}";
}

[JsonSourceGenerationOptions(WriteIndented = true, PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase)]
[JsonSerializable(typeof(StagedVolumeRecord))]
[JsonSerializable(typeof(Dictionary<string, string>))]
internal sealed partial class StateJsonContext : JsonSerializerContext;
