using Csi.V1;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using UblkCsi.Engine;
using UblkCsi.GrpcHosting;
using UblkCsi.Hosting;
using UblkCsi.TestSupport;
using CapabilityType = Csi.V1.PluginCapability.Types.Service.Types.Type;

namespace UblkCsi.NodePlugin.Tests;

/// <summary>The real node host, in-process on a temp unix socket, called as kubelet calls it.</summary>
public sealed class NodeIdentityTests
{
    private static Task<TResponse> Call<TRequest, TResponse>(RunningHost host, string method, TRequest request)
        where TRequest : class, Google.Protobuf.IMessage<TRequest>
        where TResponse : class, Google.Protobuf.IMessage<TResponse>, new() =>
        host.CallAsync<TRequest, TResponse>(CsiServices.Identity.FindMethodByName(method), request, DateTime.UtcNow.AddSeconds(10));

    private static async Task<RunningHost> StartNodeAsync(Func<HostSupportReport>? probe = null, params string[] args)
    {
        var directory = RunningHost.NewDirectory();
        return await RunningHost.StartAsync(
            invocation => NodeHost.RunAsync(invocation, probe, FakeNode.HostSystem),
            ["--node-id", "node-a", "--state-dir", Path.Combine(directory, "state"), .. args],
            directory: directory);
    }

    [Fact]
    public async Task GetPluginInfoReportsTheDriverNameAndVersion()
    {
        await using var host = await StartNodeAsync(null, "--driver-name", "ublk.csi.example.com");

        var info = await Call<GetPluginInfoRequest, GetPluginInfoResponse>(host, "GetPluginInfo", new GetPluginInfoRequest());

        Assert.Equal("ublk.csi.example.com", info.Name);
        Assert.Equal(HostRunner.InformationalVersion(typeof(NodeHost).Assembly), info.VendorVersion);
    }

    [Fact]
    public async Task CapabilitiesAreTopologyOnly()
    {
        await using var host = await StartNodeAsync();

        var response = await Call<GetPluginCapabilitiesRequest, GetPluginCapabilitiesResponse>(host, "GetPluginCapabilities", new GetPluginCapabilitiesRequest());

        Assert.Equal([CapabilityType.VolumeAccessibilityConstraints], response.Capabilities.Select(c => c.Service.Type));
    }

    [Fact]
    public async Task ProbeReflectsThisHostsRealUblkSupport()
    {
        var report = HostSupport.Probe();
        await using var host = await StartNodeAsync();

        var probe = await Call<ProbeRequest, ProbeResponse>(host, "Probe", new ProbeRequest());

        Assert.NotNull(probe.Ready);
        Assert.Equal(report.Ready, probe.Ready.Value);
        if (!report.Ready)
        {
            Assert.Contains(host.Logs.Entries, e => e.Level == LogLevel.Warning && e.Message.Contains(report.Problem!, StringComparison.Ordinal));
        }
    }

    [Fact]
    public async Task ProbeIsNotReadyWithoutUblkAndLogsTheProblemOncePerChange()
    {
        var report = new HostSupportReport(ControlDevicePresent: false, IoUringAvailable: true);
        await using var host = await StartNodeAsync(() => report);

        var first = await Call<ProbeRequest, ProbeResponse>(host, "Probe", new ProbeRequest());
        var second = await Call<ProbeRequest, ProbeResponse>(host, "Probe", new ProbeRequest());
        report = new HostSupportReport(ControlDevicePresent: true, IoUringAvailable: true);
        var third = await Call<ProbeRequest, ProbeResponse>(host, "Probe", new ProbeRequest());

        Assert.False(first.Ready);
        Assert.False(second.Ready);
        Assert.True(third.Ready);
        var warnings = host.Logs.Entries.Where(e => e.Message.StartsWith("node plugin not ready", StringComparison.Ordinal)).ToList();
        var warning = Assert.Single(warnings);
        Assert.Contains("/dev/ublk-control is missing: load the ublk_drv kernel module", warning.Message);
        Assert.Single(host.Logs.Entries, e => e.Message.StartsWith("node plugin ready", StringComparison.Ordinal));
    }

    [Fact]
    public async Task StateDirectoryIsCreated()
    {
        await using var host = await StartNodeAsync();

        Assert.True(Directory.Exists(Path.Combine(host.Directory, "state")));
    }

    [Fact]
    public async Task NodeServiceIsServedOnTheSameEndpoint()
    {
        await using var host = await StartNodeAsync(null, "--max-volumes-per-node", "100");

        var info = await host.CallAsync<NodeGetInfoRequest, NodeGetInfoResponse>(
            CsiServices.Node.FindMethodByName("NodeGetInfo"), new NodeGetInfoRequest());

        Assert.Equal(("node-a", 100L), (info.NodeId, info.MaxVolumesPerNode));
        Assert.Equal("node-a", info.AccessibleTopology.Segments["topology.ublk.csi.storage/node"]);
        var e = await Assert.ThrowsAsync<RpcException>(() => host.CallAsync<NodeStageVolumeRequest, NodeStageVolumeResponse>(
            CsiServices.Node.FindMethodByName("NodeStageVolume"), new NodeStageVolumeRequest()));
        Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
    }

    [Fact]
    public void IdentityImplementsEveryIdentityRpc() =>
        Assert.Equal(["GetPluginCapabilities", "GetPluginInfo", "Probe"], ServiceOverrides.Of(typeof(IdentityService)));

    [Fact]
    public void NodeImplementsEveryNodeRpc() =>
        Assert.Equal(
            ["NodeExpandVolume", "NodeGetCapabilities", "NodeGetInfo", "NodeGetVolumeStats", "NodePublishVolume", "NodeStageVolume", "NodeUnpublishVolume", "NodeUnstageVolume"],
            ServiceOverrides.Of(typeof(NodeService)));
}
