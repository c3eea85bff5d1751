using System.Collections.Frozen;
using System.Diagnostics;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using UblkCsi.GrpcHosting.Logging;
using UblkCsi.GrpcHosting.Wire;

namespace UblkCsi.GrpcHosting.Server;

/// <summary>
/// The single request entry point: validates the gRPC request headers, routes by path, runs the
/// method under the caller's deadline, maps every outcome to a gRPC status, and logs the call.
/// </summary>
internal sealed class GrpcDispatcher(
    FrozenDictionary<string, MethodHandler> methods,
    int maxReceiveMessageBytes,
    CallLogger callLogger)
{
    public async Task HandleAsync(HttpContext http)
    {
        var started = Stopwatch.GetTimestamp();
        var request = http.Request;
        var path = request.Path.Value ?? string.Empty;

        if (!HttpMethods.IsPost(request.Method))
        {
            http.Response.StatusCode = StatusCodes.Status405MethodNotAllowed;
            return;
        }

        if (!GrpcProtocol.IsGrpcContentType(request.ContentType))
        {
            // The gRPC spec answers non-gRPC content with a plain HTTP error, not a gRPC status.
            http.Response.StatusCode = StatusCodes.Status415UnsupportedMediaType;
            return;
        }

        if (!methods.TryGetValue(path, out var handler))
        {
            WriteStatus(http.Response, StatusCode.Unimplemented, UnknownMethodMessage(path));
            callLogger.Completed(path, StatusCode.Unimplemented, "unknown method", Stopwatch.GetElapsedTime(started), request: null, exception: null);
            return;
        }

        if (!TryReadEncoding(request, out var gzip))
        {
            http.Response.Headers[GrpcProtocol.AcceptEncodingHeader] = GrpcProtocol.SupportedEncodings;
            WriteStatus(http.Response, StatusCode.Unimplemented, $"grpc-encoding '{request.Headers[GrpcProtocol.EncodingHeader]}' is not supported; supported: {GrpcProtocol.SupportedEncodings}");
            callLogger.Completed(path, StatusCode.Unimplemented, "unsupported grpc-encoding", Stopwatch.GetElapsedTime(started), request: null, exception: null);
            return;
        }

        var timeoutHeader = request.Headers[GrpcProtocol.TimeoutHeader];
        var timeout = Timeout.InfiniteTimeSpan;
        if (timeoutHeader.Count > 0 && !GrpcTimeout.TryParse(timeoutHeader.ToString(), out timeout))
        {
            WriteStatus(http.Response, StatusCode.Internal, $"malformed grpc-timeout header '{timeoutHeader}'");
            callLogger.Completed(path, StatusCode.Internal, "malformed grpc-timeout", Stopwatch.GetElapsedTime(started), request: null, exception: null);
            return;
        }

        using var deadline = CallDeadline.Start(timeout, http.RequestAborted);
        var call = new ServerCallContext(path, deadline.Deadline, deadline.Token, request.Headers);
        StatusCode code;
        string? detail = null;
        byte[]? statusDetails = null;
        Exception? failure = null;
        try
        {
            if (deadline.Expired)
            {
                throw new OperationCanceledException(deadline.Token);
            }

            await handler.HandleAsync(http, call, new GrpcCallSettings(gzip, maxReceiveMessageBytes));
            code = StatusCode.OK;
        }
        catch (RpcException e)
        {
            (code, detail, statusDetails) = (e.StatusCode, e.Detail, e.StatusDetails);
        }
        catch (OperationCanceledException) when (deadline.Expired)
        {
            (code, detail) = (StatusCode.DeadlineExceeded, "deadline exceeded");
        }
        catch (Exception) when (http.RequestAborted.IsCancellationRequested)
        {
            // The client went away; nothing can be sent, but the log still records the call.
            (code, detail) = (StatusCode.Cancelled, "call cancelled by the client");
        }
        catch (Exception e)
        {
            // The exception stays in the server log; the wire only carries a generic message.
            (code, detail, failure) = (StatusCode.Internal, "internal server error", e);
        }

        if (code != StatusCode.OK && !http.RequestAborted.IsCancellationRequested)
        {
            WriteStatus(http.Response, code, detail!, statusDetails);
        }

        callLogger.Completed(path, code, detail, Stopwatch.GetElapsedTime(started), call.Request, failure);
    }

    /// <summary>
    /// Sends a status. Before the response has started this is a trailers-only response (status
    /// in the one HEADERS frame); afterwards it goes into the trailers.
    /// </summary>
    private static void WriteStatus(HttpResponse response, StatusCode code, string detail, byte[]? statusDetails = null)
    {
        var message = GrpcStatusMessage.Encode(detail);

        // Binary metadata is base64 without padding (gRPC over HTTP/2 spec, "-bin" headers).
        var details = statusDetails is null ? null : Convert.ToBase64String(statusDetails).TrimEnd('=');
        if (!response.HasStarted)
        {
            response.StatusCode = StatusCodes.Status200OK;
            response.ContentType = GrpcProtocol.ContentType;
            response.Headers[GrpcProtocol.StatusHeader] = GrpcStatusValues.Format(code);
            response.Headers[GrpcProtocol.MessageHeader] = message;
            if (details is not null)
            {
                response.Headers[GrpcProtocol.StatusDetailsHeader] = details;
            }

            return;
        }

        response.AppendTrailer(GrpcProtocol.StatusHeader, GrpcStatusValues.Format(code));
        response.AppendTrailer(GrpcProtocol.MessageHeader, message);
        if (details is not null)
        {
            response.AppendTrailer(GrpcProtocol.StatusDetailsHeader, details);
        }
    }

    private static bool TryReadEncoding(HttpRequest request, out bool gzip)
    {
        var encoding = request.Headers[GrpcProtocol.EncodingHeader];
        gzip = false;
        if (encoding.Count == 0)
        {
            return true;
        }

        var value = encoding.ToString();
        if (string.Equals(value, GrpcProtocol.IdentityEncoding, StringComparison.Ordinal))
        {
            return true;
        }

        gzip = string.Equals(value, GrpcProtocol.GzipEncoding, StringComparison.Ordinal);
        return gzip;
    }

    private string UnknownMethodMessage(string path)
    {
        var slash = path.LastIndexOf('/');
        if (slash > 0)
        {
            var service = path[..slash];
            if (!methods.Keys.Any(k => k.StartsWith(service + "/", StringComparison.Ordinal)))
            {
                return $"unknown service {service.TrimStart('/')}";
            }
        }

        return $"unknown method {path}";
    }
}
