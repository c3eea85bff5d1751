using Microsoft.Extensions.Logging;
using UblkCsi.Engine.Logging;

namespace UblkCsi.Stores.Internal;

/// <summary>The stores' log events (source-generated; ids from the engine's central <see cref="LogEventIds"/>).</summary>
internal static partial class StoresLog
{
    [LoggerMessage(EventId = LogEventIds.S3WriteBackFailed, Level = LogLevel.Error,
        Message = "s3 volume {VolumeId}: background write-back failed: {Reason}; dirty chunks stay in the cache and the next FLUSH retries. Logged once until it succeeds again.")]
    public static partial void S3WriteBackFailed(ILogger logger, string volumeId, string reason, Exception exception);

    [LoggerMessage(EventId = LogEventIds.S3WriteBackRecovered, Level = LogLevel.Information,
        Message = "s3 volume {VolumeId}: background write-back succeeds again")]
    public static partial void S3WriteBackRecovered(ILogger logger, string volumeId);

    [LoggerMessage(EventId = LogEventIds.S3WriterFenced, Level = LogLevel.Error,
        Message = "s3 volume {VolumeId}: {Reason}. The flush that found it failed with EIO, and so do later writes and flushes.")]
    public static partial void S3WriterFenced(ILogger logger, string volumeId, string reason);

    [LoggerMessage(EventId = LogEventIds.S3CompactionFailed, Level = LogLevel.Warning,
        Message = "s3 volume {VolumeId}: compacting the flush journal into a new base failed: {Reason}; the journal stays and the next compaction retries")]
    public static partial void S3CompactionFailed(ILogger logger, string volumeId, string reason, Exception exception);
}
