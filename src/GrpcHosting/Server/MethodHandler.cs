using System.Buffers;
using System.Reflection;
using Google.Protobuf;
using Google.Protobuf.Reflection;
using Microsoft.AspNetCore.Http;
using UblkCsi.GrpcHosting.Wire;

namespace UblkCsi.GrpcHosting.Server;

/// <summary>One routable method: reads the request, runs the implementation, writes the response.</summary>
internal abstract class MethodHandler(MethodDescriptor method)
{
    public MethodDescriptor Method { get; } = method;

    /// <summary>The HTTP/2 path the method is served at: /package.Service/Method.</summary>
    public string Path { get; } = $"/{method.Service.FullName}/{method.Name}";

    /// <summary>Serves the call; throws <see cref="RpcException"/> for any status other than OK.</summary>
    public abstract Task HandleAsync(HttpContext http, ServerCallContext call, GrpcCallSettings settings);
}

/// <summary>Per-call facts the dispatcher derived from the request headers.</summary>
internal readonly record struct GrpcCallSettings(bool GzipRequest, int MaxReceiveMessageBytes);

/// <summary>A method the service declares but deliberately does not implement.</summary>
internal sealed class UnimplementedMethodHandler(MethodDescriptor method) : MethodHandler(method)
{
    public override Task HandleAsync(HttpContext http, ServerCallContext call, GrpcCallSettings settings) =>
        throw new RpcException(StatusCode.Unimplemented, $"method {Path} is not implemented by this server");
}

/// <summary>A unary method bound to a delegate; no reflection runs per call.</summary>
internal sealed class UnaryMethodHandler<TRequest, TResponse> : MethodHandler
    where TRequest : class, IMessage<TRequest>
    where TResponse : class, IMessage<TResponse>
{
    private readonly Func<TRequest, ServerCallContext, ValueTask<TResponse>> _invoke;
    private readonly MessageParser<TRequest> _parser;

    public UnaryMethodHandler(MethodDescriptor method, MethodInfo implementation, object target)
        : base(method)
    {
        _parser = (MessageParser<TRequest>)method.InputType.Parser;
        if (implementation.ReturnType == typeof(Task<TResponse>))
        {
            var invoke = implementation.CreateDelegate<Func<TRequest, ServerCallContext, Task<TResponse>>>(target);
            _invoke = (request, call) => new ValueTask<TResponse>(invoke(request, call));
        }
        else
        {
            _invoke = implementation.CreateDelegate<Func<TRequest, ServerCallContext, ValueTask<TResponse>>>(target);
        }
    }

    public override async Task HandleAsync(HttpContext http, ServerCallContext call, GrpcCallSettings settings)
    {
        var request = await RequestMessageReader.ReadAsync(
            http.Request.BodyReader, _parser, settings.GzipRequest, settings.MaxReceiveMessageBytes, call.CancellationToken);
        call.Request = request;

        var pending = _invoke(request, call);
        var response = pending.IsCompletedSuccessfully ? pending.Result : await WaitAsync(pending, call.CancellationToken);
        if (response is null)
        {
            throw new InvalidOperationException($"{Path} returned a null response");
        }

        WriteResponse(http.Response, response);
    }

    /// <summary>
    /// Waits for the handler, but no longer than the call's token allows: a handler that ignores
    /// its token must not hold the caller past its deadline. The abandoned task's failure is
    /// observed so it cannot surface as an unobserved exception.
    /// </summary>
    private static async ValueTask<TResponse> WaitAsync(ValueTask<TResponse> pending, CancellationToken cancellationToken)
    {
        var task = pending.AsTask();
        try
        {
            return await task.WaitAsync(cancellationToken);
        }
        catch (OperationCanceledException) when (!task.IsCompleted)
        {
            _ = task.ContinueWith(static t => _ = t.Exception, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
            throw;
        }
    }

    private static void WriteResponse(HttpResponse response, TResponse message)
    {
        response.ContentType = GrpcProtocol.ContentType;
        var size = message.CalculateSize();
        var writer = response.BodyWriter;
        GrpcProtocol.WriteFrameHeader(writer.GetSpan(GrpcProtocol.FrameHeaderSize), size);
        writer.Advance(GrpcProtocol.FrameHeaderSize);
        message.WriteTo((IBufferWriter<byte>)writer);
        response.AppendTrailer(GrpcProtocol.StatusHeader, GrpcStatusValues.Ok);
    }
}
