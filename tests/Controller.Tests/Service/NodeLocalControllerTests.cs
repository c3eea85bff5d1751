using Csi.V1;
using Grpc.Core;
using UblkCsi.Controller.Provisioning;
using UblkCsi.Stores;
using UblkCsi.TestSupport;
using static UblkCsi.Controller.Tests.Service.Csi;
using RpcType = Csi.V1.ControllerServiceCapability.Types.RPC.Types.Type;

namespace UblkCsi.Controller.Tests.Service;

/// <summary>
/// The controller as the node plugin serves it for node-local file volumes (distributed provisioning):
/// volumes pinned to the node, IDs that other nodes and the central controller refuse, capacity per node.
/// </summary>
public sealed class NodeLocalControllerTests(FileStoreUnderTest files) : IClassFixture<FileStoreUnderTest>
{
    private const string Driver = "local.ublk.csi.test";
    private const string TopologyKey = "topology." + Driver + "/node";
    private static readonly ServerCallContext Call = new TestCallContext();

    private ControllerHarness OnNode(string node)
    {
        var (parameters, secrets) = files.NewLocation();
        return new ControllerHarness(new ControllerServiceOptions(Driver) { NodeLocalNodeId = node }, parameters, secrets);
    }

    private static Topology Segment(string node) => new() { Segments = { [TopologyKey] = node } };

    [Fact]
    public async Task ServesFileOnlyWithoutAttach()
    {
        await using var c = OnNode("node-1");

        var capabilities = (await c.Service.ControllerGetCapabilities(new ControllerGetCapabilitiesRequest(), Call)).Capabilities.Select(x => x.Rpc.Type).ToList();
        var s3 = await Fails(StatusCode.InvalidArgument, () => c.Service.CreateVolume(Create("v", new Dictionary<string, string> { ["store"] = "s3", ["bucket"] = "b" }, c.Secrets), Call));

        Assert.DoesNotContain(RpcType.PublishUnpublishVolume, capabilities);
        Assert.Contains(RpcType.GetCapacity, capabilities);
        Assert.Contains("allowed: file", s3.Status.Detail);
        await Fails(StatusCode.Unimplemented, () => c.Service.ControllerPublishVolume(new ControllerPublishVolumeRequest(), Call));
    }

    [Fact]
    public async Task VolumesArePinnedToTheNodeAndTheirIdsSayWhichNode()
    {
        await using var c = OnNode("node-1");
        var request = Create("pvc-local", c.Parameters, c.Secrets);
        request.AccessibilityRequirements = new TopologyRequirement { Requisite = { Segment("node-1") }, Preferred = { Segment("node-1") } };

        var volume = (await c.Service.CreateVolume(request, Call)).Volume;
        var snapshot = (await c.Service.CreateSnapshot(new CreateSnapshotRequest { Name = "snap-local", SourceVolumeId = volume.VolumeId }, Call)).Snapshot;

        Assert.Equal("node-1", Assert.Single(volume.AccessibleTopology).Segments[TopologyKey]);
        Assert.True(VolumeHandle.TryParse(volume.VolumeId, out var handle));
        Assert.StartsWith($"file@{StoreLocator.NodeKeyOf("node-1")}:", handle.Locator);
        Assert.StartsWith($"file@{StoreLocator.NodeKeyOf("node-1")}:", snapshot.SnapshotId);
        var listed = await c.Service.ListVolumes(new ListVolumesRequest(), Call);
        Assert.Equal("node-1", listed.Entries.Single().Volume.AccessibleTopology.Single().Segments[TopologyKey]);
    }

    [Fact]
    public async Task RequirementsThatExcludeTheNodeAreResourceExhausted()
    {
        await using var c = OnNode("node-1");
        var request = Create("pvc-elsewhere", c.Parameters, c.Secrets);
        request.AccessibilityRequirements = new TopologyRequirement { Requisite = { Segment("node-2") } };

        await Fails(StatusCode.ResourceExhausted, () => c.Service.CreateVolume(request, Call));
    }

    [Fact]
    public async Task OtherNodesAndTheCentralControllerRefuseItsIds()
    {
        await using var node1 = OnNode("node-1");
        var volume = (await node1.Service.CreateVolume(Create("pvc-mine", node1.Parameters, node1.Secrets), Call)).Volume;
        await using var node2 = new ControllerHarness(new ControllerServiceOptions(Driver) { NodeLocalNodeId = "node-2" }, node1.Parameters, node1.Secrets);
        await using var central = new ControllerHarness(new ControllerServiceOptions(Driver), node1.Parameters, node1.Secrets);

        // The root exists on every node, so "not found, deleted" would be a lie that leaks the volume.
        await Fails(StatusCode.FailedPrecondition, () => node2.Service.DeleteVolume(new DeleteVolumeRequest { VolumeId = volume.VolumeId }, Call));
        await Fails(StatusCode.FailedPrecondition, () => central.Service.DeleteVolume(new DeleteVolumeRequest { VolumeId = volume.VolumeId }, Call));
        await Fails(StatusCode.FailedPrecondition, () => node2.Service.ControllerExpandVolume(new ControllerExpandVolumeRequest { VolumeId = volume.VolumeId, CapacityRange = new() { RequiredBytes = 2 * GiB } }, Call));
        await node1.Service.DeleteVolume(new DeleteVolumeRequest { VolumeId = volume.VolumeId }, Call);
    }

    [Fact]
    public async Task CapacityIsThisNodesFreeSpaceAndZeroForOtherSegments()
    {
        await using var c = OnNode("node-1");

        var mine = await c.Service.GetCapacity(new GetCapacityRequest { Parameters = { c.Parameters }, AccessibleTopology = Segment("node-1") }, Call);
        var theirs = await c.Service.GetCapacity(new GetCapacityRequest { Parameters = { c.Parameters }, AccessibleTopology = Segment("node-2") }, Call);

        Assert.True(mine.AvailableCapacity > 0);
        Assert.Equal(mine.AvailableCapacity, mine.MaximumVolumeSize);
        Assert.Equal(0, theirs.AvailableCapacity);
    }
}
