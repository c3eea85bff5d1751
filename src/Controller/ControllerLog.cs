using Microsoft.Extensions.Logging;

namespace UblkCsi.Controller;

/// <summary>The controller's log lines. IDs, names, sizes and node IDs only: never parameters' secrets.</summary>
internal static partial class ControllerLog
{
    [LoggerMessage(EventId = 100, Level = LogLevel.Information, Message = "Created volume {VolumeId} ({SizeBytes} bytes) for name {Name}")]
    public static partial void VolumeCreated(ILogger logger, string volumeId, long sizeBytes, string name);

    [LoggerMessage(EventId = 101, Level = LogLevel.Information, Message = "Deleted volume {VolumeId} (existed: {Existed})")]
    public static partial void VolumeDeleted(ILogger logger, string volumeId, bool existed);

    [LoggerMessage(EventId = 102, Level = LogLevel.Information, Message = "Expanded volume {VolumeId} to {SizeBytes} bytes")]
    public static partial void VolumeExpanded(ILogger logger, string volumeId, long sizeBytes);

    [LoggerMessage(EventId = 103, Level = LogLevel.Information, Message = "Created snapshot {SnapshotId} of {SourceVolumeId}")]
    public static partial void SnapshotCreated(ILogger logger, string snapshotId, string sourceVolumeId);

    [LoggerMessage(EventId = 104, Level = LogLevel.Information, Message = "Deleted snapshot {SnapshotId} (existed: {Existed})")]
    public static partial void SnapshotDeleted(ILogger logger, string snapshotId, bool existed);

    [LoggerMessage(EventId = 105, Level = LogLevel.Information, Message = "Published volume {VolumeId} to node {NodeId} (read-only: {ReadOnly})")]
    public static partial void VolumePublished(ILogger logger, string volumeId, string nodeId, bool readOnly);

    [LoggerMessage(EventId = 106, Level = LogLevel.Warning, Message = "Refused to publish volume {VolumeId} to node {NodeId}: it is published to {OtherNodes}")]
    public static partial void PublishRefused(ILogger logger, string volumeId, string nodeId, string otherNodes);

    [LoggerMessage(EventId = 107, Level = LogLevel.Information, Message = "Unpublished volume {VolumeId} from {NodeId}")]
    public static partial void VolumeUnpublished(ILogger logger, string volumeId, string nodeId);

    [LoggerMessage(EventId = 108, Level = LogLevel.Warning, Message = "Volume {VolumeId} is abnormal: {Reason}")]
    public static partial void VolumeAbnormal(ILogger logger, string volumeId, string reason);

    [LoggerMessage(EventId = 109, Level = LogLevel.Information, Message = "Modified volume {VolumeId}: QoS limits now {Limits}")]
    public static partial void VolumeModified(ILogger logger, string volumeId, string limits);
}
