using Csi.V1;
using Google.Protobuf;
using Grpc.Core;
using Legacy = UblkCsi.GrpcHosting;

namespace UblkCsi.NodePlugin.LegacyHosting;

/// <summary>
/// TEMPORARY bridge, deleted when the node host moves to Grpc.AspNetCore: exposes
/// <see cref="NodeService"/> (a <c>Node.NodeBase</c>) to the hand-written server in src/GrpcHosting,
/// which binds plain methods taking its own call context and understands only its own RpcException.
/// </summary>
internal sealed class LegacyNodeBinding(NodeService service)
{
    public Task<NodeGetCapabilitiesResponse> NodeGetCapabilities(NodeGetCapabilitiesRequest request, Legacy.ServerCallContext context) =>
        ForwardAsync(context, c => service.NodeGetCapabilities(request, c));

    public Task<NodeGetInfoResponse> NodeGetInfo(NodeGetInfoRequest request, Legacy.ServerCallContext context) =>
        ForwardAsync(context, c => service.NodeGetInfo(request, c));

    public Task<NodeStageVolumeResponse> NodeStageVolume(NodeStageVolumeRequest request, Legacy.ServerCallContext context) =>
        ForwardAsync(context, c => service.NodeStageVolume(request, c));

    public Task<NodeUnstageVolumeResponse> NodeUnstageVolume(NodeUnstageVolumeRequest request, Legacy.ServerCallContext context) =>
        ForwardAsync(context, c => service.NodeUnstageVolume(request, c));

    public Task<NodePublishVolumeResponse> NodePublishVolume(NodePublishVolumeRequest request, Legacy.ServerCallContext context) =>
        ForwardAsync(context, c => service.NodePublishVolume(request, c));

    public Task<NodeUnpublishVolumeResponse> NodeUnpublishVolume(NodeUnpublishVolumeRequest request, Legacy.ServerCallContext context) =>
        ForwardAsync(context, c => service.NodeUnpublishVolume(request, c));

    public Task<NodeGetVolumeStatsResponse> NodeGetVolumeStats(NodeGetVolumeStatsRequest request, Legacy.ServerCallContext context) =>
        ForwardAsync(context, c => service.NodeGetVolumeStats(request, c));

    public Task<NodeExpandVolumeResponse> NodeExpandVolume(NodeExpandVolumeRequest request, Legacy.ServerCallContext context) =>
        ForwardAsync(context, c => service.NodeExpandVolume(request, c));

    private static async Task<T> ForwardAsync<T>(Legacy.ServerCallContext context, Func<ServerCallContext, Task<T>> call)
        where T : IMessage
    {
        try
        {
            return await call(new ForwardedCallContext(context)).ConfigureAwait(false);
        }
        catch (RpcException e)
        {
            throw new Legacy.RpcException((Legacy.StatusCode)(int)e.StatusCode, e.Status.Detail, e);
        }
    }

    private sealed class ForwardedCallContext(Legacy.ServerCallContext inner) : ServerCallContext
    {
        protected override string MethodCore => inner.Method;

        protected override string HostCore => "localhost";

        protected override string PeerCore => "unix:";

        protected override DateTime DeadlineCore => inner.Deadline;

        protected override Metadata RequestHeadersCore { get; } = [];

        protected override CancellationToken CancellationTokenCore => inner.CancellationToken;

        protected override Metadata ResponseTrailersCore { get; } = [];

        protected override Status StatusCore { get; set; }

        protected override WriteOptions? WriteOptionsCore { get; set; }

        protected override AuthContext AuthContextCore { get; } = new(null, new Dictionary<string, List<AuthProperty>>());

        protected override ContextPropagationToken CreatePropagationTokenCore(ContextPropagationOptions? options) => throw new NotSupportedException();

        protected override Task WriteResponseHeadersAsyncCore(Metadata responseHeaders) => Task.CompletedTask;
    }
}
