using Csi.V1;
using Grpc.Net.Client;
using UblkCsi.GrpcEndpoints;
using UblkCsi.GrpcHosting;
using UblkCsi.TestSupport;
using CapabilityType = Csi.V1.PluginCapability.Types.Service.Types.Type;
using RpcType = Csi.V1.ControllerServiceCapability.Types.RPC.Types.Type;

namespace UblkCsi.NodePlugin.Tests;

/// <summary>
/// --controller-endpoint: the node plugin's second socket, which serves the node-local controller (file
/// volumes of this node, distributed provisioning) under the local driver name.
/// </summary>
public sealed class NodeLocalControllerSocketTests
{
    private const string Node = "node-a";
    private const string Driver = "ublk.csi.example.com";
    private const string LocalDriver = "local." + Driver;

    private static Task<(RunningHost Host, string ControllerSocket)> StartAsync(params string[] args) =>
        StartAsync(FakeNode.HostSystem, RunningHost.NewDirectory(), args);

    private static async Task<(RunningHost Host, string ControllerSocket)> StartAsync(NodeSystem system, string directory, params string[] args)
    {
        var controllerSocket = Path.Combine(directory, "controller.sock");
        var host = await RunningHost.StartAsync(
            invocation => NodeHost.RunAsync(invocation, () => new Engine.HostSupportReport(ControlDevicePresent: true, IoUringAvailable: true), system),
            ["--node-id", Node, "--driver-name", Driver, "--state-dir", Path.Combine(directory, "state"), "--controller-endpoint", "unix://" + controllerSocket, .. args],
            directory: directory);
        return (host, controllerSocket);
    }

    private static Task<TResponse> Call<TRequest, TResponse>(GrpcChannel channel, Google.Protobuf.Reflection.ServiceDescriptor service, string method, TRequest request)
        where TRequest : class, Google.Protobuf.IMessage<TRequest>
        where TResponse : class, Google.Protobuf.IMessage<TResponse>, new() =>
        channel.CallAsync<TRequest, TResponse>(service.FindMethodByName(method), request, DateTime.UtcNow.AddSeconds(10));

    [Fact]
    public async Task SecondSocketServesTheLocalDriverWithControllerAndNode()
    {
        var (host, socket) = await StartAsync();
        await using var _ = host;
        using var channel = GrpcChannels.Create(GrpcEndpoint.Parse("unix://" + socket));

        var info = await Call<GetPluginInfoRequest, GetPluginInfoResponse>(channel, CsiServices.Identity, "GetPluginInfo", new());
        var plugin = await Call<GetPluginCapabilitiesRequest, GetPluginCapabilitiesResponse>(channel, CsiServices.Identity, "GetPluginCapabilities", new());
        var probe = await Call<ProbeRequest, ProbeResponse>(channel, CsiServices.Identity, "Probe", new());
        var controller = await Call<ControllerGetCapabilitiesRequest, ControllerGetCapabilitiesResponse>(channel, CsiServices.Controller, "ControllerGetCapabilities", new());
        var node = await Call<NodeGetInfoRequest, NodeGetInfoResponse>(channel, CsiServices.Node, "NodeGetInfo", new());

        Assert.Equal(LocalDriver, info.Name);
        Assert.Equal([CapabilityType.ControllerService, CapabilityType.VolumeAccessibilityConstraints], plugin.Capabilities.Select(c => c.Service.Type));
        Assert.NotNull(probe.Ready);
        var rpcs = controller.Capabilities.Select(c => c.Rpc.Type).ToList();
        Assert.Contains(RpcType.CreateDeleteVolume, rpcs);
        Assert.DoesNotContain(RpcType.PublishUnpublishVolume, rpcs);
        Assert.Equal(Node, node.NodeId);
        Assert.Equal(Node, Assert.Single(node.AccessibleTopology.Segments, s => s.Key == $"topology.{LocalDriver}/node").Value);
        Assert.Single(node.AccessibleTopology.Segments);

        // The node socket is unchanged: its own driver name, no controller.
        var nodeInfo = await host.CallAsync<GetPluginInfoRequest, GetPluginInfoResponse>(CsiServices.Identity.FindMethodByName("GetPluginInfo"), new());
        var nodeTopology = await host.CallAsync<NodeGetInfoRequest, NodeGetInfoResponse>(CsiServices.Node.FindMethodByName("NodeGetInfo"), new());
        Assert.Equal(Driver, nodeInfo.Name);
        Assert.Equal(Node, nodeTopology.AccessibleTopology.Segments[$"topology.{Driver}/node"]);
    }

    [Fact]
    public async Task CreateVolumeMakesAFileVolumePinnedToThisNode()
    {
        var (host, socket) = await StartAsync();
        await using var _ = host;
        using var channel = GrpcChannels.Create(GrpcEndpoint.Parse("unix://" + socket));
        var root = Path.Combine(host.Directory, "volumes");
        Directory.CreateDirectory(root);
        var request = new CreateVolumeRequest
        {
            Name = "pvc-local",
            CapacityRange = new CapacityRange { RequiredBytes = 1 << 20 },
            VolumeCapabilities =
            {
                new VolumeCapability
                {
                    Mount = new VolumeCapability.Types.MountVolume { FsType = "ext4" },
                    AccessMode = new VolumeCapability.Types.AccessMode { Mode = VolumeCapability.Types.AccessMode.Types.Mode.SingleNodeWriter },
                },
            },
            Parameters = { ["store"] = "file", ["root"] = root },
        };

        var volume = (await Call<CreateVolumeRequest, CreateVolumeResponse>(channel, CsiServices.Controller, "CreateVolume", request)).Volume;

        Assert.Equal(Node, Assert.Single(volume.AccessibleTopology).Segments[$"topology.{LocalDriver}/node"]);
        Assert.StartsWith("file@", volume.VolumeId);
        Assert.NotEmpty(Directory.EnumerateFileSystemEntries(root));
    }

    /// <summary>
    /// csi-sanity's end-to-end Node spec ("should work", runControllerTest) as it runs against this
    /// socket: CreateVolume constrained to the topology NodeGetInfo reports here, stage, publish and
    /// stats with the volume_context CreateVolume returned, stats elsewhere NOT_FOUND, unpublish
    /// removing the target path, unstage and delete leaving nothing. A real file store under fake
    /// mounts and devices (the kernel part runs in the VM).
    /// </summary>
    [Fact]
    public async Task TheConformanceSuiteLifecycleRunsOnTheSecondSocket()
    {
        var mounter = new FakeMounter();
        var system = new NodeSystem { Mounter = mounter, Filesystems = new FakeFilesystems(), Devices = new FakeDevices(), SkipKubeletDirectoryCheck = true };
        var directory = RunningHost.NewDirectory();
        var kubelet = Path.Combine(directory, "kubelet");
        var (host, controllerSocket) = await StartAsync(system, directory, "--kubelet-dir", kubelet);
        await using var _ = host;
        var root = Path.Combine(host.Directory, "volumes");
        Directory.CreateDirectory(root);
        using var channel = GrpcChannels.Create(GrpcEndpoint.Parse("unix://" + controllerSocket));
        var staging = Path.Combine(kubelet, "plugins/sanity/staging");
        var target = Path.Combine(kubelet, "pods/sanity/mount/target");
        Directory.CreateDirectory(staging);
        Directory.CreateDirectory(Path.GetDirectoryName(target)!);
        var capability = new VolumeCapability
        {
            Mount = new VolumeCapability.Types.MountVolume(),
            AccessMode = new VolumeCapability.Types.AccessMode { Mode = VolumeCapability.Types.AccessMode.Types.Mode.SingleNodeWriter },
        };

        var info = await Call<NodeGetInfoRequest, NodeGetInfoResponse>(channel, CsiServices.Node, "NodeGetInfo", new());
        var volume = (await Call<CreateVolumeRequest, CreateVolumeResponse>(channel, CsiServices.Controller, "CreateVolume", new CreateVolumeRequest
        {
            Name = "sanity-node-full-1",
            CapacityRange = new CapacityRange { RequiredBytes = 64 << 20 },
            VolumeCapabilities = { capability },
            Parameters = { ["store"] = "file", ["root"] = root },
            AccessibilityRequirements = new TopologyRequirement { Requisite = { info.AccessibleTopology } },
        })).Volume;
        await Call<NodeStageVolumeRequest, NodeStageVolumeResponse>(channel, CsiServices.Node, "NodeStageVolume", new NodeStageVolumeRequest
        {
            VolumeId = volume.VolumeId, StagingTargetPath = staging, VolumeCapability = capability, VolumeContext = { volume.VolumeContext },
        });
        await Call<NodePublishVolumeRequest, NodePublishVolumeResponse>(channel, CsiServices.Node, "NodePublishVolume", new NodePublishVolumeRequest
        {
            VolumeId = volume.VolumeId, StagingTargetPath = staging, TargetPath = target, VolumeCapability = capability, VolumeContext = { volume.VolumeContext },
        });
        var stats = await Call<NodeGetVolumeStatsRequest, NodeGetVolumeStatsResponse>(channel, CsiServices.Node, "NodeGetVolumeStats", new NodeGetVolumeStatsRequest { VolumeId = volume.VolumeId, VolumePath = target });
        var elsewhere = await Assert.ThrowsAsync<Grpc.Core.RpcException>(() => Call<NodeGetVolumeStatsRequest, NodeGetVolumeStatsResponse>(
            channel, CsiServices.Node, "NodeGetVolumeStats", new NodeGetVolumeStatsRequest { VolumeId = volume.VolumeId, VolumePath = "some/path" }));
        var targetWhilePublished = Directory.Exists(target);
        await Call<NodeUnpublishVolumeRequest, NodeUnpublishVolumeResponse>(channel, CsiServices.Node, "NodeUnpublishVolume", new NodeUnpublishVolumeRequest { VolumeId = volume.VolumeId, TargetPath = target });
        await Call<NodeUnstageVolumeRequest, NodeUnstageVolumeResponse>(channel, CsiServices.Node, "NodeUnstageVolume", new NodeUnstageVolumeRequest { VolumeId = volume.VolumeId, StagingTargetPath = staging });
        await Call<DeleteVolumeRequest, DeleteVolumeResponse>(channel, CsiServices.Controller, "DeleteVolume", new DeleteVolumeRequest { VolumeId = volume.VolumeId });

        Assert.Equal(info.AccessibleTopology, Assert.Single(volume.AccessibleTopology));
        Assert.True(Assert.Single(stats.Usage, u => u.Unit == VolumeUsage.Types.Unit.Bytes).Total > 0);
        Assert.False(stats.VolumeCondition.Abnormal);
        Assert.Equal(Grpc.Core.StatusCode.NotFound, elsewhere.StatusCode);
        Assert.True(targetWhilePublished);
        Assert.False(Directory.Exists(target), "NodeUnpublishVolume must remove the target path it created (csi-sanity checks it)");
        Assert.Empty(mounter.ReadMounts());
        Assert.Empty(Directory.EnumerateFiles(Path.Combine(root, "volumes")));
    }

    [Fact]
    public async Task StopRemovesBothSockets()
    {
        var (host, socket) = await StartAsync();
        Assert.True(File.Exists(socket));

        Assert.Equal(0, await host.StopAsync());

        Assert.False(File.Exists(host.SocketPath));
        Assert.False(File.Exists(socket));
        await host.DisposeAsync();
    }

    [Fact]
    public async Task WithoutControllerEndpointThereIsNoSecondSocket()
    {
        var directory = RunningHost.NewDirectory();
        await using var host = await RunningHost.StartAsync(
            invocation => NodeHost.RunAsync(invocation, system: FakeNode.HostSystem),
            ["--node-id", Node, "--state-dir", Path.Combine(directory, "state")],
            directory: directory);

        Assert.Equal(["csi.sock"], Directory.EnumerateFiles(directory).Select(Path.GetFileName));
        await Assert.ThrowsAsync<Grpc.Core.RpcException>(() => host.CallAsync<ControllerGetCapabilitiesRequest, ControllerGetCapabilitiesResponse>(
            CsiServices.Controller.FindMethodByName("ControllerGetCapabilities"), new()));
    }

    [Fact]
    public async Task InvalidControllerDriverNameExitsWith2()
    {
        var (exit, error, _) = await RunningHost.RunToExitAsync(
            i => NodeHost.RunAsync(i, system: FakeNode.HostSystem),
            ["--node-id", Node, "--endpoint", "unix:///tmp/unused.sock", "--controller-endpoint", "unix:///tmp/unused-controller.sock", "--controller-driver-name", "-local.bad"]);

        Assert.Equal(2, exit);
        Assert.Equal("ublk-csi-node: --controller-driver-name: '-local.bad' must start and end with a letter or digit", error.TrimEnd('\n'));
    }

    [Fact]
    public async Task ControllerEndpointMustDifferFromTheNodeEndpoint()
    {
        var (exit, error, _) = await RunningHost.RunToExitAsync(
            i => NodeHost.RunAsync(i, system: FakeNode.HostSystem),
            ["--node-id", Node, "--endpoint", "unix:///tmp/same.sock", "--controller-endpoint", "unix:///tmp/same.sock"]);

        Assert.Equal(2, exit);
        Assert.Contains("--controller-endpoint: 'unix:///tmp/same.sock' must differ from --endpoint", error);
    }
}
