using Csi.V1;
using Grpc.Core;
using UblkCsi.NodePlugin.State;
using UblkCsi.Stores.Files;
using RpcType = Csi.V1.NodeServiceCapability.Types.RPC.Types.Type;

namespace UblkCsi.NodePlugin.Tests;

/// <summary>NodeService called directly, as kubelet and csi-sanity call it, over in-memory mounts, devices and stores.</summary>
public sealed class NodeServiceTests : IAsyncLifetime
{
    private const string Volume = "loc1/vol1";
    private static readonly ServerCallContext Ctx = TestCallContext.Instance;
    private FakeNode _node = null!;

    public async Task InitializeAsync() => _node = await FakeNode.StartAsync();

    public async Task DisposeAsync()
    {
        await _node.DisposeAsync();
        _node.DeleteFiles();
    }

    private static async Task<StatusCode> CodeOf(Func<Task> call) => (await Assert.ThrowsAsync<RpcException>(call)).StatusCode;

    [Fact]
    public async Task CapabilitiesAreTheSixTheNodeImplements()
    {
        var response = await _node.Service.NodeGetCapabilities(new NodeGetCapabilitiesRequest(), Ctx);

        Assert.Equal(
            [RpcType.StageUnstageVolume, RpcType.GetVolumeStats, RpcType.VolumeCondition, RpcType.ExpandVolume, RpcType.SingleNodeMultiWriter, RpcType.VolumeMountGroup],
            response.Capabilities.Select(c => c.Rpc.Type));
    }

    [Fact]
    public async Task InfoNamesTheNodeItsLimitAndItsTopology()
    {
        var info = await _node.Service.NodeGetInfo(new NodeGetInfoRequest(), Ctx);

        Assert.Equal("node-1", info.NodeId);
        Assert.Equal(42, info.MaxVolumesPerNode);
        Assert.Equal("node-1", info.AccessibleTopology.Segments["topology.ublk.csi.test/node"]);
    }

    [Fact]
    public async Task MissingFieldsAreInvalidArgumentBeforeAnythingIsTouched()
    {
        var s = _node.Service;
        var stage = _node.StageRequest(Volume);
        Assert.Equal(StatusCode.InvalidArgument, await CodeOf(() => s.NodeStageVolume(new NodeStageVolumeRequest(stage) { VolumeId = "" }, Ctx)));
        Assert.Equal(StatusCode.InvalidArgument, await CodeOf(() => s.NodeStageVolume(new NodeStageVolumeRequest(stage) { StagingTargetPath = "" }, Ctx)));
        Assert.Equal(StatusCode.InvalidArgument, await CodeOf(() => s.NodeStageVolume(new NodeStageVolumeRequest(stage) { VolumeCapability = null }, Ctx)));
        Assert.Equal(StatusCode.InvalidArgument, await CodeOf(() => s.NodeStageVolume(new NodeStageVolumeRequest(stage) { StagingTargetPath = "/tmp/elsewhere" }, Ctx)));
        Assert.Equal(StatusCode.InvalidArgument, await CodeOf(() => s.NodeStageVolume(new NodeStageVolumeRequest(stage) { StagingTargetPath = _node.KubeletDirectory + "/a/../b" }, Ctx)));
        Assert.Equal(StatusCode.InvalidArgument, await CodeOf(() => s.NodeStageVolume(new NodeStageVolumeRequest(stage) { VolumeCapability = FakeNode.MountCapability("btrfs") }, Ctx)));
        Assert.Equal(StatusCode.InvalidArgument, await CodeOf(() => s.NodeStageVolume(new NodeStageVolumeRequest(stage) { VolumeCapability = FakeNode.MountCapability(mode: VolumeCapability.Types.AccessMode.Types.Mode.MultiNodeMultiWriter) }, Ctx)));
        var noStore = new NodeStageVolumeRequest(stage);
        noStore.VolumeContext.Remove("store");
        Assert.Equal(StatusCode.InvalidArgument, await CodeOf(() => s.NodeStageVolume(noStore, Ctx)));

        Assert.Equal(StatusCode.InvalidArgument, await CodeOf(() => s.NodeUnstageVolume(new NodeUnstageVolumeRequest { StagingTargetPath = stage.StagingTargetPath }, Ctx)));
        Assert.Equal(StatusCode.InvalidArgument, await CodeOf(() => s.NodeUnstageVolume(new NodeUnstageVolumeRequest { VolumeId = Volume }, Ctx)));
        Assert.Equal(StatusCode.InvalidArgument, await CodeOf(() => s.NodePublishVolume(new NodePublishVolumeRequest(), Ctx)));
        Assert.Equal(StatusCode.InvalidArgument, await CodeOf(() => s.NodePublishVolume(new NodePublishVolumeRequest { VolumeId = Volume }, Ctx)));
        Assert.Equal(StatusCode.InvalidArgument, await CodeOf(() => s.NodePublishVolume(new NodePublishVolumeRequest { VolumeId = Volume, TargetPath = _node.TargetPath("p") }, Ctx)));
        Assert.Equal(StatusCode.InvalidArgument, await CodeOf(() => s.NodeUnpublishVolume(new NodeUnpublishVolumeRequest(), Ctx)));
        Assert.Equal(StatusCode.InvalidArgument, await CodeOf(() => s.NodeUnpublishVolume(new NodeUnpublishVolumeRequest { VolumeId = Volume }, Ctx)));
        Assert.Equal(StatusCode.InvalidArgument, await CodeOf(() => s.NodeGetVolumeStats(new NodeGetVolumeStatsRequest { VolumePath = "some/path" }, Ctx)));
        Assert.Equal(StatusCode.InvalidArgument, await CodeOf(() => s.NodeGetVolumeStats(new NodeGetVolumeStatsRequest { VolumeId = Volume }, Ctx)));
        Assert.Equal(StatusCode.InvalidArgument, await CodeOf(() => s.NodeExpandVolume(new NodeExpandVolumeRequest { VolumePath = "/x" }, Ctx)));
        Assert.Equal(StatusCode.InvalidArgument, await CodeOf(() => s.NodeExpandVolume(new NodeExpandVolumeRequest { VolumeId = Volume }, Ctx)));

        Assert.Empty(_node.Devices.Devices);
        Assert.Empty(_node.Mounter.ReadMounts());
        Assert.Equal(0, _node.Opener.OpenCount);
    }

    [Fact]
    public async Task UnknownVolumesAreNotFoundWhereTheSpecSaysSo()
    {
        var s = _node.Service;
        Assert.Equal(StatusCode.NotFound, await CodeOf(() => s.NodeGetVolumeStats(new NodeGetVolumeStatsRequest { VolumeId = "fake-id", VolumePath = "some/path" }, Ctx)));
        Assert.Equal(StatusCode.NotFound, await CodeOf(() => s.NodeExpandVolume(new NodeExpandVolumeRequest { VolumeId = "fake-id", VolumePath = "some/path" }, Ctx)));
        Assert.Equal(StatusCode.NotFound, await CodeOf(() => s.NodeStageVolume(_node.StageRequest("loc1/missing"), Ctx)));
        Assert.Equal(StatusCode.NotFound, await CodeOf(() => s.NodeStageVolume(_node.StageRequest("no-slash"), Ctx)));

        // Unstage and unpublish of what is not there succeed: kubelet retries them after crashes.
        await s.NodeUnstageVolume(new NodeUnstageVolumeRequest { VolumeId = Volume, StagingTargetPath = _node.StagingPath(Volume) }, Ctx);
        await s.NodeUnpublishVolume(new NodeUnpublishVolumeRequest { VolumeId = Volume, TargetPath = _node.TargetPath("p") }, Ctx);
        Assert.Empty(_node.Devices.Devices);
    }

    [Fact]
    public async Task StageFormatsABlankVolumeMountsItAndIsIdempotent()
    {
        var request = _node.StageRequest(Volume);

        await _node.Service.NodeStageVolume(request, Ctx);
        await _node.Service.NodeStageVolume(request, Ctx);

        Assert.Equal(["mkfs.ext4 /dev/ublkb0"], _node.Filesystems.Calls);
        var mount = Assert.Single(_node.Mounter.ReadMounts());
        Assert.Equal(("/dev/ublkb0", request.StagingTargetPath, "ext4"), (mount.Source, mount.MountPoint, mount.FsType));
        Assert.Single(_node.Devices.Devices);
        var opened = Assert.Single(_node.Opener.Opens);
        Assert.Equal("vol1", opened.VolumeId);
        Assert.Equal("s3cret", opened.Secrets["token"]);

        var record = new StagedVolumeStore(_node.StateDirectory).TryRead(Volume);
        Assert.NotNull(record);
        Assert.Equal(("file", "/srv/volumes", 0), (record.StoreType, record.StoreParameters["root"], record.DeviceId));
        Assert.False(record.StoreParameters.ContainsKey("csi.storage.k8s.io/pv/name"));
        Assert.DoesNotContain("s3cret", File.ReadAllText(Path.Combine(_node.StateDirectory, "volumes", StagedVolumeStore.KeyOf(Volume) + ".json")));
    }

    [Fact]
    public async Task AProbeDuringWhichTheStoreFailedNeverLeadsToMkfs()
    {
        // blkid says "nothing found" (exit 2) also when it could not read the device.
        _node.Filesystems.DuringProbe = device => _node.Devices.Devices[int.Parse(device["/dev/ublkb".Length..], System.Globalization.CultureInfo.InvariantCulture)].BackendErrors++;

        var code = await CodeOf(() => _node.Service.NodeStageVolume(_node.StageRequest(Volume), Ctx));

        Assert.Equal(StatusCode.Unavailable, code);
        Assert.Empty(_node.Filesystems.Calls);
        Assert.Empty(_node.Mounter.ReadMounts());
        Assert.Null(new StagedVolumeStore(_node.StateDirectory).TryRead(Volume));

        _node.Filesystems.DuringProbe = null;
        await _node.Service.NodeStageVolume(_node.StageRequest(Volume), Ctx);
        Assert.Equal(["mkfs.ext4 /dev/ublkb0"], _node.Filesystems.Calls);
    }

    [Fact]
    public async Task PublishNeedsTheStagedFilesystemMountedAndAStagingPath()
    {
        await _node.Service.NodeStageVolume(_node.StageRequest(Volume), Ctx);
        _node.Mounter.Unmount(_node.StagingPath(Volume)); // someone unmounted the staging path

        var unmounted = await CodeOf(() => _node.Service.NodePublishVolume(_node.PublishRequest(Volume, "pod-a"), Ctx));
        var noStagingPath = _node.PublishRequest(Volume, "pod-a");
        noStagingPath.StagingTargetPath = "";
        var missing = await CodeOf(() => _node.Service.NodePublishVolume(noStagingPath, Ctx));

        Assert.Equal(StatusCode.FailedPrecondition, unmounted);
        Assert.Equal(StatusCode.FailedPrecondition, missing);
        Assert.Empty(_node.Mounter.ReadMounts());

        // Staging again remounts it; then the publish goes through.
        await _node.Service.NodeStageVolume(_node.StageRequest(Volume), Ctx);
        await _node.Service.NodePublishVolume(_node.PublishRequest(Volume, "pod-a"), Ctx);
        Assert.Equal(2, _node.Mounter.ReadMounts().Count);
    }

    [Fact]
    public async Task ARepeatedStageWithAnotherVolumeMountGroupIsAlreadyExists()
    {
        var first = FakeNode.MountCapability();
        first.Mount.VolumeMountGroup = "2000";
        await _node.Service.NodeStageVolume(_node.StageRequest(Volume, first), Ctx);

        var other = FakeNode.MountCapability();
        other.Mount.VolumeMountGroup = "3000";
        Assert.Equal(StatusCode.AlreadyExists, await CodeOf(() => _node.Service.NodeStageVolume(_node.StageRequest(Volume, other), Ctx)));
        Assert.Equal(StatusCode.AlreadyExists, await CodeOf(() => _node.Service.NodeStageVolume(_node.StageRequest(Volume), Ctx)));
        await _node.Service.NodeStageVolume(_node.StageRequest(Volume, first), Ctx);
    }

    [Fact]
    public async Task StageNeverReformatsAndRefusesAConflictingRequest()
    {
        _node.Filesystems.OnDevice["/dev/ublkb0"] = "xfs";

        var wrongFs = await CodeOf(() => _node.Service.NodeStageVolume(_node.StageRequest(Volume, FakeNode.MountCapability("ext4")), Ctx));

        Assert.Equal(StatusCode.FailedPrecondition, wrongFs);
        Assert.Empty(_node.Filesystems.Calls);
        Assert.Empty(_node.Mounter.ReadMounts());
        Assert.Equal(DeviceConditionAbsent, _node.Devices.Devices[0].Condition);
        Assert.Null(new StagedVolumeStore(_node.StateDirectory).TryRead(Volume));

        await _node.Service.NodeStageVolume(_node.StageRequest(Volume, FakeNode.MountCapability("xfs")), Ctx);
        Assert.Contains("nouuid", _node.Mounter.Calls.Single());
        Assert.Equal(["grow xfs /dev/ublkb0"], _node.Filesystems.Calls);

        var conflict = await CodeOf(() => _node.Service.NodeStageVolume(_node.StageRequest(Volume, FakeNode.BlockCapability()), Ctx));
        Assert.Equal(StatusCode.AlreadyExists, conflict);
    }

    private const Volumes.DeviceCondition DeviceConditionAbsent = Volumes.DeviceCondition.Absent;

    [Fact]
    public async Task PublishBindsReadOnlyOnRequestAndUnpublishRemovesTheTarget()
    {
        var s = _node.Service;
        Assert.Equal(StatusCode.FailedPrecondition, await CodeOf(() => s.NodePublishVolume(_node.PublishRequest(Volume, "pod-a"), Ctx)));
        await s.NodeStageVolume(_node.StageRequest(Volume), Ctx);

        await s.NodePublishVolume(_node.PublishRequest(Volume, "pod-a"), Ctx);
        await s.NodePublishVolume(_node.PublishRequest(Volume, "pod-a"), Ctx);
        await s.NodePublishVolume(_node.PublishRequest(Volume, "pod-b", readOnly: true), Ctx);

        var targetA = _node.TargetPath("pod-a");
        var targetB = _node.TargetPath("pod-b");
        Assert.True(Directory.Exists(targetA));
        Assert.Equal(3, _node.Mounter.ReadMounts().Count);
        Assert.True(_node.Mounter.ReadMounts().Single(m => m.MountPoint == targetB).ReadOnly);
        Assert.Equal(StatusCode.AlreadyExists, await CodeOf(() => s.NodePublishVolume(_node.PublishRequest(Volume, "pod-a", readOnly: true), Ctx)));

        var unstage = new NodeUnstageVolumeRequest { VolumeId = Volume, StagingTargetPath = _node.StagingPath(Volume) };
        Assert.Equal(StatusCode.FailedPrecondition, await CodeOf(() => s.NodeUnstageVolume(unstage, Ctx)));

        foreach (var target in new[] { targetA, targetB, targetA })
        {
            await s.NodeUnpublishVolume(new NodeUnpublishVolumeRequest { VolumeId = Volume, TargetPath = target }, Ctx);
        }

        Assert.False(Directory.Exists(targetA));
        Assert.False(Directory.Exists(targetB));

        await s.NodeUnstageVolume(unstage, Ctx);
        await s.NodeUnstageVolume(unstage, Ctx);
        Assert.Empty(_node.Mounter.ReadMounts());
        Assert.Equal(DeviceConditionAbsent, _node.Devices.Devices[0].Condition);
        Assert.Equal([0], _node.Devices.ForgottenRecords);
        Assert.Empty(Directory.GetFiles(Path.Combine(_node.StateDirectory, "volumes")));
    }

    [Fact]
    public async Task BlockVolumesAreStagedWithoutAFilesystemAndPublishedOntoAFile()
    {
        var s = _node.Service;
        await s.NodeStageVolume(_node.StageRequest(Volume, FakeNode.BlockCapability()), Ctx);
        await s.NodePublishVolume(_node.PublishRequest(Volume, "pod-a", FakeNode.BlockCapability()), Ctx);

        var target = _node.TargetPath("pod-a");
        Assert.True(File.Exists(target));
        Assert.Empty(_node.Filesystems.Calls);
        var bind = Assert.Single(_node.Mounter.ReadMounts());
        Assert.Equal(("/ublkb0", target), (bind.Root, bind.MountPoint));

        var stats = await s.NodeGetVolumeStats(new NodeGetVolumeStatsRequest { VolumeId = Volume, VolumePath = target }, Ctx);
        var usage = Assert.Single(stats.Usage);
        Assert.Equal((VolumeUsage.Types.Unit.Bytes, 64L << 20), (usage.Unit, usage.Total));
        Assert.False(stats.VolumeCondition.Abnormal);

        Assert.Equal(StatusCode.InvalidArgument, await CodeOf(() => s.NodePublishVolume(_node.PublishRequest(Volume, "pod-b"), Ctx)));
        await s.NodeUnpublishVolume(new NodeUnpublishVolumeRequest { VolumeId = Volume, TargetPath = target }, Ctx);
        Assert.False(File.Exists(target));
    }

    [Fact]
    public async Task StatsNeedTheVolumeAtThatPathAndReportAnUnhealthyDevice()
    {
        var s = _node.Service;
        await s.NodeStageVolume(_node.StageRequest(Volume, FakeNode.BlockCapability()), Ctx);
        await s.NodePublishVolume(_node.PublishRequest(Volume, "pod-a", FakeNode.BlockCapability()), Ctx);
        var request = new NodeGetVolumeStatsRequest { VolumeId = Volume, VolumePath = _node.TargetPath("pod-a") };

        Assert.Equal(StatusCode.NotFound, await CodeOf(() => s.NodeGetVolumeStats(new NodeGetVolumeStatsRequest(request) { VolumePath = "some/path" }, Ctx)));

        _node.Devices.Devices[0].BackendErrors = 3;
        var failing = await s.NodeGetVolumeStats(request, Ctx);
        Assert.True(failing.VolumeCondition.Abnormal);
        Assert.Contains("failed 3 I/O request(s)", failing.VolumeCondition.Message);

        _node.Devices.Devices[0].Fail();
        var dead = await s.NodeGetVolumeStats(request, Ctx);
        Assert.True(dead.VolumeCondition.Abnormal);
        Assert.Contains("queue failed", dead.VolumeCondition.Message);
    }

    [Fact]
    public async Task ExpandGrowsTheFilesystemOrSaysWhenItWillGrow()
    {
        var s = _node.Service;
        await s.NodeStageVolume(_node.StageRequest(Volume), Ctx);
        await s.NodePublishVolume(_node.PublishRequest(Volume, "pod-a"), Ctx);
        var request = new NodeExpandVolumeRequest { VolumeId = Volume, VolumePath = _node.TargetPath("pod-a"), CapacityRange = new CapacityRange { RequiredBytes = 64 << 20 } };

        var response = await s.NodeExpandVolume(request, Ctx);
        Assert.Equal(64L << 20, response.CapacityBytes);
        Assert.Contains("grow ext4 /dev/ublkb0", _node.Filesystems.Calls);

        var tooBig = await Assert.ThrowsAsync<RpcException>(() => s.NodeExpandVolume(new NodeExpandVolumeRequest(request) { CapacityRange = new CapacityRange { RequiredBytes = 128 << 20 } }, Ctx));
        Assert.Equal(StatusCode.FailedPrecondition, tooBig.StatusCode);
        Assert.Contains("when it is staged again", tooBig.Status.Detail);
    }

    [Fact]
    public async Task OnAKernelThatResizesLiveDevicesAFileVolumeGrowsOnline()
    {
        var root = Path.Combine(_node.Root, "file-store");
        Directory.CreateDirectory(root);
        await using var controller = new FileStore(new FileStoreOptions(root));
        var created = await controller.CreateVolumeAsync(new UblkCsi.Stores.CreateVolumeRequest("pvc-online", 64 << 20));
        _node.Opener.Store = () => new FileStore(new FileStoreOptions(root));
        _node.Devices.CanResizeLive = true;
        var volume = $"loc1/{created.Id}";
        var s = _node.Service;
        await s.NodeStageVolume(_node.StageRequest(volume), Ctx);
        var request = new NodeExpandVolumeRequest { VolumeId = volume, VolumePath = _node.StagingPath(volume), CapacityRange = new CapacityRange { RequiredBytes = 128 << 20 } };

        // The controller has not grown the volume yet: nothing changes.
        var early = await Assert.ThrowsAsync<RpcException>(() => s.NodeExpandVolume(request, Ctx));
        Assert.Equal(StatusCode.FailedPrecondition, early.StatusCode);
        Assert.Contains("expand it through the controller first", early.Status.Detail);
        Assert.Equal(64L << 20, _node.Devices.Devices[0].SizeBytes);

        await controller.ExpandVolumeAsync(created.Id, 128 << 20);
        var response = await s.NodeExpandVolume(request, Ctx);

        Assert.Equal(128L << 20, response.CapacityBytes);
        Assert.Equal(128L << 20, _node.Devices.Devices[0].SizeBytes);
        Assert.Contains("grow ext4 /dev/ublkb0", _node.Filesystems.Calls);
    }

    [Fact]
    public async Task AStoreThatCannotGrowAnOpenVolumeSaysItGrowsAtTheNextStage()
    {
        _node.Devices.CanResizeLive = true;
        var s = _node.Service;
        await s.NodeStageVolume(_node.StageRequest(Volume), Ctx);
        var request = new NodeExpandVolumeRequest { VolumeId = Volume, VolumePath = _node.StagingPath(Volume), CapacityRange = new CapacityRange { RequiredBytes = 128 << 20 } };

        var refused = await Assert.ThrowsAsync<RpcException>(() => s.NodeExpandVolume(request, Ctx));

        Assert.Equal(StatusCode.FailedPrecondition, refused.StatusCode);
        Assert.Contains("cannot grow a volume while it is open", refused.Status.Detail);
        Assert.Contains("when it is staged again", refused.Status.Detail);
    }

    [Fact]
    public async Task AConcurrentCallOnTheSameVolumeIsAborted()
    {
        _node.Opener.Gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var first = _node.Service.NodeStageVolume(_node.StageRequest(Volume), Ctx);

        Assert.Equal(StatusCode.Aborted, await CodeOf(() => _node.Service.NodeStageVolume(_node.StageRequest(Volume), Ctx)));
        Assert.Equal(StatusCode.Aborted, await CodeOf(() => _node.Service.NodeUnstageVolume(new NodeUnstageVolumeRequest { VolumeId = Volume, StagingTargetPath = _node.StagingPath(Volume) }, Ctx)));

        _node.Opener.Gate.SetResult();
        await first;
        Assert.Single(_node.Devices.Devices);
    }

    [Fact]
    public async Task VolumeMountGroupOwnsTheFilesystemRoot()
    {
        var capability = FakeNode.MountCapability();
        capability.Mount.VolumeMountGroup = "2000";
        capability.Mount.MountFlags.Add("noatime");

        await _node.Service.NodeStageVolume(_node.StageRequest(Volume, capability), Ctx);

        Assert.Contains($"group 2000 {_node.StagingPath(Volume)}", _node.Filesystems.Calls);
        Assert.Contains("-o noatime ", _node.Mounter.Calls.Single());
        capability.Mount.VolumeMountGroup = "staff";
        Assert.Equal(StatusCode.InvalidArgument, await CodeOf(() => _node.Service.NodeStageVolume(_node.StageRequest(Volume, capability), Ctx)));
    }
}
