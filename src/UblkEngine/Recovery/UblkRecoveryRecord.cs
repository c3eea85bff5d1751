using System.Text.Json.Serialization;

namespace UblkCsi.Engine.Recovery;

/// <summary>
/// What a new server process needs to adopt a device whose server died: written when the device
/// is created, removed when it is deleted. Holds no secrets: <see cref="Backend"/> is redacted.
/// </summary>
public sealed record UblkRecoveryRecord(
    int DeviceId,
    int Queues,
    int Depth,
    UblkDeviceParameters Parameters,
    string? Backend,
    DateTimeOffset CreatedAt)
{
    /// <summary>Record format version, for readers of older files.</summary>
    public int Version { get; init; } = 1;

    /// <summary>When a process last adopted the device, if ever.</summary>
    public DateTimeOffset? RecoveredAt { get; init; }

    /// <summary>Pid of the process serving the device when the record was written.</summary>
    public int ServerPid { get; init; }

    /// <summary>
    /// The device was created with UBLK_F_AUTO_BUF_REG (zero copy): an adopting server must register a
    /// sparse buffer table on each queue ring and name each tag's slot in FETCH / COMMIT_AND_FETCH.
    /// Absent (false) in records of older versions, whose devices never had the flag.
    /// </summary>
    public bool AutoBufferRegistration { get; init; }
}

[JsonSourceGenerationOptions(WriteIndented = true, PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase)]
[JsonSerializable(typeof(UblkRecoveryRecord))]
internal sealed partial class RecoveryJsonContext : JsonSerializerContext;
