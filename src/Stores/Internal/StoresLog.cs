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
}
