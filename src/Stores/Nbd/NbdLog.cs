using Microsoft.Extensions.Logging;

namespace UblkCsi.Stores.Nbd;

/// <summary>Log messages of the nbd store. Endpoints and export names are not secret; nothing else is logged.</summary>
internal static partial class NbdLog
{
    [LoggerMessage(EventId = Engine.Logging.LogEventIds.NbdConnected, Level = LogLevel.Information, Message = "{Server}: connection {Channel} ready: {Export}")]
    public static partial void Connected(ILogger logger, string server, int channel, NbdExport export);

    [LoggerMessage(EventId = Engine.Logging.LogEventIds.NbdConnectionLost, Level = LogLevel.Warning, Message = "{Server}: connection {Channel} lost with {InFlight} requests in flight: {Reason}")]
    public static partial void ConnectionLost(ILogger logger, string server, int channel, int inFlight, string reason);

    [LoggerMessage(EventId = Engine.Logging.LogEventIds.NbdConnectionRestored, Level = LogLevel.Information, Message = "{Server}: connection {Channel} restored after {Milliseconds} ms and {Attempts} attempts; {Reissued} requests sent again")]
    public static partial void Reconnected(ILogger logger, string server, int channel, long milliseconds, int attempts, int reissued);

    [LoggerMessage(EventId = Engine.Logging.LogEventIds.NbdReconnectFailed, Level = LogLevel.Debug, Message = "{Server}: reconnect attempt {Attempt} of connection {Channel} failed: {Reason}")]
    public static partial void ReconnectFailed(ILogger logger, string server, int channel, int attempt, string reason);

    [LoggerMessage(EventId = Engine.Logging.LogEventIds.NbdGaveUp, Level = LogLevel.Error, Message = "{Server}: connection {Channel} still down after {Seconds} s; failing {Failed} requests with EIO and new ones at once until it is back: {Reason}")]
    public static partial void GaveUp(ILogger logger, string server, int channel, double seconds, int failed, string reason);

    [LoggerMessage(EventId = Engine.Logging.LogEventIds.NbdSingleConnection, Level = LogLevel.Information, Message = "{Server}: export '{Export}' does not advertise NBD_FLAG_CAN_MULTI_CONN; using one connection instead of {Requested}")]
    public static partial void SingleConnection(ILogger logger, string server, string export, int requested);

    [LoggerMessage(EventId = Engine.Logging.LogEventIds.NbdRequestFailed, Level = LogLevel.Error, Message = "{Server}: request {Command} of {Length} bytes at {Offset} failed after {Attempts} connections: {Reason}")]
    public static partial void RequestGaveUp(ILogger logger, string server, NbdCommand command, uint length, long offset, int attempts, string reason);
}
