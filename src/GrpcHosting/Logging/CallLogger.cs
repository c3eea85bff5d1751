using Google.Protobuf;
using Microsoft.Extensions.Logging;

namespace UblkCsi.GrpcHosting.Logging;

/// <summary>
/// The one logging interceptor: every call is logged once, with method, status, duration and
/// the redacted request. Successful calls log at Debug (kubelet probes every few seconds), failed
/// ones at Information, internal errors at Error with the exception. The request is rendered
/// only when the line will actually be written.
/// </summary>
internal sealed partial class CallLogger(ILogger logger, MessageRedactor redactor)
{
    public void Completed(string method, StatusCode code, string? detail, TimeSpan elapsed, IMessage? request, Exception? exception)
    {
        var level = code switch
        {
            StatusCode.OK => LogLevel.Debug,
            StatusCode.Internal or StatusCode.Unknown or StatusCode.DataLoss => LogLevel.Error,
            _ => LogLevel.Information,
        };

        if (!logger.IsEnabled(level))
        {
            return;
        }

        var rendered = redactor.Render(request);
        var milliseconds = elapsed.TotalMilliseconds;
        switch (level)
        {
            case LogLevel.Debug:
                CallSucceeded(logger, method, milliseconds, rendered);
                break;
            case LogLevel.Error:
                CallErrored(logger, method, code, detail, milliseconds, rendered, exception);
                break;
            default:
                CallFailed(logger, method, code, detail, milliseconds, rendered);
                break;
        }
    }

    [LoggerMessage(EventId = 1, Level = LogLevel.Debug, Message = "rpc {Method} OK in {ElapsedMs:0.###} ms; request {Request}")]
    private static partial void CallSucceeded(ILogger logger, string method, double elapsedMs, string request);

    [LoggerMessage(EventId = 2, Level = LogLevel.Information, Message = "rpc {Method} {StatusCode} in {ElapsedMs:0.###} ms: {Detail}; request {Request}")]
    private static partial void CallFailed(ILogger logger, string method, StatusCode statusCode, string? detail, double elapsedMs, string request);

    [LoggerMessage(EventId = 3, Level = LogLevel.Error, Message = "rpc {Method} {StatusCode} in {ElapsedMs:0.###} ms: {Detail}; request {Request}")]
    private static partial void CallErrored(ILogger logger, string method, StatusCode statusCode, string? detail, double elapsedMs, string request, Exception? exception);
}
