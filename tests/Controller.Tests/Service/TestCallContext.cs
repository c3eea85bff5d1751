using Grpc.Core;

namespace UblkCsi.Controller.Tests.Service;

/// <summary>A server call context for calling service methods directly, as the gRPC runtime would.</summary>
public sealed class TestCallContext(CancellationToken cancellationToken = default) : ServerCallContext
{
    public static TestCallContext None { get; } = new();

    protected override string MethodCore => "/csi.v1.Controller/Test";

    protected override string HostCore => "localhost";

    protected override string PeerCore => "unix:test";

    protected override DateTime DeadlineCore => DateTime.MaxValue;

    protected override Metadata RequestHeadersCore { get; } = [];

    protected override CancellationToken CancellationTokenCore => cancellationToken;

    protected override Metadata ResponseTrailersCore { get; } = [];

    protected override Status StatusCore { get; set; }

    protected override WriteOptions? WriteOptionsCore { get; set; }

    protected override AuthContext AuthContextCore { get; } = new(null, new Dictionary<string, List<AuthProperty>>());

    protected override ContextPropagationToken CreatePropagationTokenCore(ContextPropagationOptions? options) => throw new NotSupportedException();

    protected override Task WriteResponseHeadersAsyncCore(Metadata responseHeaders) => Task.CompletedTask;
}
