using Google.Protobuf;
using Grpc.Core;
using Ublkcsi.Testing.V1;

namespace UblkCsi.GrpcHosting.Tests;

/// <summary>The test implementation of ublkcsi.testing.v1.Echo; Watch (streaming) is not overridden, so it answers UNIMPLEMENTED.</summary>
public sealed class EchoService : Echo.EchoBase
{
    public int SlowCallsFinished;

    /// <summary>Completes when a Slow call has reached the handler (the call is then in flight on the server).</summary>
    public TaskCompletionSource SlowCallStarted { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public static Google.Protobuf.Reflection.ServiceDescriptor Descriptor =>
        TestingReflection.Descriptor.Services.Single(s => s.Name == "Echo");

    public override Task<EchoResponse> Echo(EchoRequest request, ServerCallContext context) =>
        Task.FromResult(new EchoResponse { Text = request.Text, Payload = request.Payload });

    public override Task<EchoResponse> Fail(EchoRequest request, ServerCallContext context) => request.FailWith switch
    {
        "rpc" => throw new RpcException(new Status(StatusCode.NotFound, request.Text)),
        _ => throw new InvalidOperationException("handler blew up: " + request.Text),
    };

    public override async Task<EchoResponse> Slow(EchoRequest request, ServerCallContext context)
    {
        SlowCallStarted.TrySetResult();
        await Task.Delay(request.DelayMs, request.IgnoreCancellation ? CancellationToken.None : context.CancellationToken);
        Interlocked.Increment(ref SlowCallsFinished);
        return new EchoResponse { Text = request.Text };
    }

    public static GrpcServer Serve(GrpcServer server, EchoService service) => server.AddService(service);

    public static ByteString Bytes(int length, byte seed = 7)
    {
        var data = new byte[length];
        for (var i = 0; i < data.Length; i++)
        {
            data[i] = (byte)(seed + (i * 31));
        }

        return ByteString.CopyFrom(data);
    }
}
