using Microsoft.Extensions.Logging;

namespace UblkCsi.Engine.Logging;

/// <summary>The engine's log events (source-generated; ids from <see cref="LogEventIds"/>).</summary>
internal static partial class EngineLog
{
    [LoggerMessage(EventId = LogEventIds.IoFlusherRefused, Level = LogLevel.Warning,
        Message = "PR_SET_IO_FLUSHER refused on I/O thread {Thread} (errno {Errno}, {Reason}): memory reclaim may wait on this process's own devices; grant CAP_SYS_RESOURCE. Logged once per process.")]
    public static partial void IoFlusherRefused(ILogger logger, string thread, int errno, string reason);

    [LoggerMessage(EventId = LogEventIds.AffinityRefused, Level = LogLevel.Warning,
        Message = "cannot pin I/O thread {Thread} to its queue's CPUs {Cpus} (errno {Errno}, {Reason}); it runs unpinned. Logged once per process.")]
    public static partial void AffinityRefused(ILogger logger, string thread, string cpus, int errno, string reason);

    [LoggerMessage(EventId = LogEventIds.FirstBackendFailure, Level = LogLevel.Error,
        Message = "ublk device {DeviceId}: {Operation} failed with errno {Errno} ({ErrnoText}): {Reason}. Further {Operation} failures with this errno are logged at most once a minute.")]
    public static partial void FirstBackendFailure(ILogger logger, int deviceId, string operation, int errno, string errnoText, string reason);

    [LoggerMessage(EventId = LogEventIds.RepeatedBackendFailure, Level = LogLevel.Warning,
        Message = "ublk device {DeviceId}: {Operation} failed again with errno {Errno} ({ErrnoText}); {Suppressed} more since the last report: {Reason}")]
    public static partial void RepeatedBackendFailure(ILogger logger, int deviceId, string operation, int errno, string errnoText, long suppressed, string reason);

    [LoggerMessage(EventId = LogEventIds.QueueAffinityUnknown, Level = LogLevel.Warning,
        Message = "ublk device {DeviceId} queue {QueueId}: GET_QUEUE_AFFINITY failed (errno {Errno}, {Reason}); its thread runs unpinned")]
    public static partial void QueueAffinityUnknown(ILogger logger, int deviceId, int queueId, int errno, string reason);

    [LoggerMessage(EventId = LogEventIds.QueueThreadLingers, Level = LogLevel.Warning,
        Message = "ublk device {DeviceId} queue {QueueId}: its thread (task {ThreadId}) had not exited after {WaitedMs} ms; closing its ring anyway")]
    public static partial void QueueThreadLingers(ILogger logger, int deviceId, int queueId, int threadId, long waitedMs);
}
