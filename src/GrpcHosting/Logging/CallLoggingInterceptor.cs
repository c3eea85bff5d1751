using System.Diagnostics;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Core.Interceptors;
using Microsoft.Extensions.Logging;

namespace UblkCsi.GrpcHosting.Logging;

/// <summary>
/// The one logging interceptor: every call is logged once, with method, status and duration, and
/// unary calls with their request rendered with every sensitive field redacted. Successful calls log
/// at Debug (kubelet probes every few seconds), failed ones at Information, internal errors at Error
/// with the exception. Every call also counts in the call metrics (method, status, latency). An exception that is not an <see cref="RpcException"/> is a bug: it is logged
/// with its stack trace and the client gets INTERNAL with a generic message, never the details.
/// </summary>
internal sealed partial class CallLoggingInterceptor(ILogger logger, MessageRedactor redactor, Metrics.GrpcCallMetrics metrics) : Interceptor
{
    /// <summary>What the client sees of an unexpected exception.</summary>
    public const string InternalErrorMessage = "internal error; the server log has the details";

    public override async Task<TResponse> UnaryServerHandler<TRequest, TResponse>(
        TRequest request, ServerCallContext context, UnaryServerMethod<TRequest, TResponse> continuation)
    {
        var started = Stopwatch.GetTimestamp();
        try
        {
            var response = await continuation(request, context).ConfigureAwait(false);
            Completed(context.Method, StatusCode.OK, null, started, request as IMessage, null);
            return response;
        }
        catch (Exception e)
        {
            throw Failed(context, started, request as IMessage, e);
        }
    }

    public override async Task DuplexStreamingServerHandler<TRequest, TResponse>(
        IAsyncStreamReader<TRequest> requestStream, IServerStreamWriter<TResponse> responseStream, ServerCallContext context, DuplexStreamingServerMethod<TRequest, TResponse> continuation)
    {
        var started = Stopwatch.GetTimestamp();
        try
        {
            await continuation(requestStream, responseStream, context).ConfigureAwait(false);
            Completed(context.Method, StatusCode.OK, null, started, null, null);
        }
        catch (Exception e)
        {
            throw Failed(context, started, null, e);
        }
    }

    public override async Task ServerStreamingServerHandler<TRequest, TResponse>(
        TRequest request, IServerStreamWriter<TResponse> responseStream, ServerCallContext context, ServerStreamingServerMethod<TRequest, TResponse> continuation)
    {
        var started = Stopwatch.GetTimestamp();
        try
        {
            await continuation(request, responseStream, context).ConfigureAwait(false);
            Completed(context.Method, StatusCode.OK, null, started, request as IMessage, null);
        }
        catch (Exception e)
        {
            throw Failed(context, started, request as IMessage, e);
        }
    }

    /// <summary>Logs a failed call and returns what to throw: the RpcException itself, or INTERNAL for anything else.</summary>
    private Exception Failed(ServerCallContext context, long started, IMessage? request, Exception e)
    {
        switch (e)
        {
            case RpcException rpc:
                Completed(context.Method, rpc.StatusCode, rpc.Status.Detail, started, request, null);
                return rpc;
            case OperationCanceledException when context.CancellationToken.IsCancellationRequested:
                // The client went away or its deadline passed; the library answers with the matching status.
                var code = context.Deadline <= DateTime.UtcNow ? StatusCode.DeadlineExceeded : StatusCode.Cancelled;
                Completed(context.Method, code, "the call ended before the handler finished", started, request, null);
                return new RpcException(new Status(code, code == StatusCode.DeadlineExceeded ? "deadline exceeded" : "cancelled"));
            default:
                Completed(context.Method, StatusCode.Internal, e.Message, started, request, e);
                return new RpcException(new Status(StatusCode.Internal, InternalErrorMessage));
        }
    }

    private void Completed(string method, StatusCode code, string? detail, long started, IMessage? request, Exception? exception)
    {
        var elapsed = Stopwatch.GetElapsedTime(started);
        metrics.Completed(method, code, elapsed.TotalSeconds);
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

        var rendered = request is null ? "(stream)" : redactor.Render(request);
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
