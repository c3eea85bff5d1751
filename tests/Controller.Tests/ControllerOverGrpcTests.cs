using Csi.V1;
using Grpc.Core;
using UblkCsi.TestSupport;
using Mode = Csi.V1.VolumeCapability.Types.AccessMode.Types.Mode;

namespace UblkCsi.Controller.Tests;

/// <summary>
/// The real controller host on a unix socket, driven through the generated CSI client as the sidecars
/// drive it: provisioning, attach, snapshot, restore, expand and teardown of file volumes, with the
/// secret-redacting call log on.
/// </summary>
public sealed class ControllerOverGrpcTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("ublk-ctrl-grpc-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    [Fact]
    public async Task SidecarLifecycleOfAFileVolume()
    {
        await using var host = await RunningHost.StartAsync(ControllerHost.RunAsync, ["--known-nodes", "node-a,node-b"]);
        var client = new Csi.V1.Controller.ControllerClient(host.Channel);
        var parameters = new Dictionary<string, string> { ["store"] = "file", ["root"] = _root, ["csi.storage.k8s.io/pvc/name"] = "data" };
        var capability = new VolumeCapability { Mount = new() { FsType = "ext4" }, AccessMode = new() { Mode = Mode.SingleNodeWriter } };
        var secrets = new Dictionary<string, string> { ["unused-provisioner-secret"] = "s3cr3t-value" };

        var volume = (await client.CreateVolumeAsync(new CreateVolumeRequest
        {
            Name = "pvc-0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
            VolumeCapabilities = { capability },
            CapacityRange = new CapacityRange { RequiredBytes = 1L << 30 },
            Parameters = { parameters },
        })).Volume;
        await client.ControllerPublishVolumeAsync(new ControllerPublishVolumeRequest { VolumeId = volume.VolumeId, NodeId = "node-a", VolumeCapability = capability });
        var busy = await Assert.ThrowsAsync<RpcException>(async () =>
            await client.ControllerPublishVolumeAsync(new ControllerPublishVolumeRequest { VolumeId = volume.VolumeId, NodeId = "node-b", VolumeCapability = capability }));
        var badSecret = await Assert.ThrowsAsync<RpcException>(async () =>
            await client.CreateSnapshotAsync(new CreateSnapshotRequest { Name = "snapshot-1", SourceVolumeId = volume.VolumeId, Secrets = { secrets } }));
        var snapshot = (await client.CreateSnapshotAsync(new CreateSnapshotRequest { Name = "snapshot-1", SourceVolumeId = volume.VolumeId })).Snapshot;
        var restored = (await client.CreateVolumeAsync(new CreateVolumeRequest
        {
            Name = "pvc-restored",
            VolumeCapabilities = { capability },
            Parameters = { parameters },
            VolumeContentSource = new VolumeContentSource { Snapshot = new() { SnapshotId = snapshot.SnapshotId } },
        })).Volume;
        var expanded = await client.ControllerExpandVolumeAsync(new ControllerExpandVolumeRequest { VolumeId = volume.VolumeId, CapacityRange = new() { RequiredBytes = 2L << 30 } });
        var unknownNode = await Assert.ThrowsAsync<RpcException>(async () =>
            await client.ControllerPublishVolumeAsync(new ControllerPublishVolumeRequest { VolumeId = restored.VolumeId, NodeId = "fake-node-id", VolumeCapability = capability }));
        await client.ControllerUnpublishVolumeAsync(new ControllerUnpublishVolumeRequest { VolumeId = volume.VolumeId, NodeId = "node-a" });
        await client.DeleteSnapshotAsync(new DeleteSnapshotRequest { SnapshotId = snapshot.SnapshotId });
        await client.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = restored.VolumeId });
        await client.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = volume.VolumeId });
        var left = await client.ListVolumesAsync(new ListVolumesRequest());

        Assert.Equal($"file:{_root}/pvc-0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", volume.VolumeId);
        Assert.Equal(new Dictionary<string, string> { ["store"] = "file", ["root"] = _root }, volume.VolumeContext);
        Assert.Equal(StatusCode.FailedPrecondition, busy.StatusCode);
        Assert.Equal(StatusCode.InvalidArgument, badSecret.StatusCode);
        Assert.Contains("unused-provisioner-secret", badSecret.Status.Detail);
        Assert.DoesNotContain("s3cr3t-value", badSecret.Status.Detail);
        Assert.Equal(StatusCode.NotFound, unknownNode.StatusCode);
        Assert.Equal(1L << 30, restored.CapacityBytes);
        Assert.Equal(2L << 30, expanded.CapacityBytes);
        Assert.Empty(left.Entries);
        Assert.Empty(Directory.EnumerateFiles(Path.Combine(_root, "volumes")));
        Assert.DoesNotContain("s3cr3t-value", host.Logs.AllText, StringComparison.Ordinal);
    }
}
