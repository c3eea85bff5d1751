using Grpc.Core;

namespace UblkCsi.TestSupport;

/// <summary>
/// A server call context for calling a service's methods directly in unit tests (the transport is
/// proven elsewhere, over real sockets). Headers and the cancellation token are the test's to set.
/// </summary>
public sealed class TestCallContext(Metadata? requestHeaders = null, CancellationToken cancellationToken = default, DateTime? deadline = null) : ServerCallContext
{
    private readonly Metadata _responseTrailers = [];
    private Status _status;

    protected override string MethodCore => "test";

    protected override string HostCore => "localhost";

    protected override string PeerCore => "unix:test";

    protected override DateTime DeadlineCore => deadline ?? DateTime.MaxValue;

    protected override Metadata RequestHeadersCore => requestHeaders ?? [];

    protected override CancellationToken CancellationTokenCore => cancellationToken;

    protected override Metadata ResponseTrailersCore => _responseTrailers;

    protected override Status StatusCore { get => _status; set => _status = value; }

    protected override WriteOptions? WriteOptionsCore { get; set; }

    protected override AuthContext AuthContextCore => new(null, []);

    protected override ContextPropagationToken CreatePropagationTokenCore(ContextPropagationOptions? options) =>
        throw new NotSupportedException("no propagation in unit tests");

    protected override Task WriteResponseHeadersAsyncCore(Metadata responseHeaders) => Task.CompletedTask;
}
