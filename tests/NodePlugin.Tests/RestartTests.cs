using Csi.V1;
using UblkCsi.NodePlugin.State;
using UblkCsi.NodePlugin.Volumes;

namespace UblkCsi.NodePlugin.Tests;

/// <summary>A new plugin process adopts what the previous one staged, with no call from kubelet.</summary>
public sealed class RestartTests
{
    private const string Volume = "loc1/vol1";
    private static readonly TestCallContext Ctx = TestCallContext.Instance;

    [Fact]
    public async Task AfterACrashTheNextProcessAdoptsTheDeviceWithTheSavedSecrets()
    {
        var first = await FakeNode.StartAsync();
        await first.Service.NodeStageVolume(first.StageRequest(Volume), Ctx);
        await first.Service.NodePublishVolume(first.PublishRequest(Volume, "pod-a"), Ctx);
        first.Devices.Crash(); // kill -9: no handover, the device waits quiesced

        var second = await FakeNode.StartAsync(first);

        var device = first.Devices.Devices[0];
        Assert.True(device.Adopted);
        Assert.Equal("s3cret", second.Opener.Opens[^1].Secrets["token"]);
        var stats = await second.Service.NodeGetVolumeStats(new NodeGetVolumeStatsRequest { VolumeId = Volume, VolumePath = second.TargetPath("pod-a") }, Ctx);
        Assert.False(stats.VolumeCondition.Abnormal);

        // kubelet's usual calls still work against the adopted volume.
        await second.Service.NodeStageVolume(second.StageRequest(Volume), Ctx);
        await second.Service.NodeUnpublishVolume(new NodeUnpublishVolumeRequest { VolumeId = Volume, TargetPath = second.TargetPath("pod-a") }, Ctx);
        await second.Service.NodeUnstageVolume(new NodeUnstageVolumeRequest { VolumeId = Volume, StagingTargetPath = second.StagingPath(Volume) }, Ctx);
        Assert.Equal(DeviceCondition.Absent, first.Devices.Devices[0].Condition);
        Assert.Single(first.Filesystems.Calls, c => c.StartsWith("mkfs", StringComparison.Ordinal));
        await second.DisposeAsync();
        first.DeleteFiles();
    }

    [Fact]
    public async Task ShutdownHandsDevicesOverInsteadOfDeletingThem()
    {
        var first = await FakeNode.StartAsync();
        await first.Service.NodeStageVolume(first.StageRequest(Volume), Ctx);

        await first.DisposeAsync();

        Assert.Equal(DeviceCondition.Quiesced, first.Devices.Devices[0].Condition);
        Assert.Single(first.Mounter.ReadMounts());
        Assert.NotNull(new StagedVolumeStore(first.StateDirectory).TryRead(Volume));

        var second = await FakeNode.StartAsync(first);
        Assert.True(first.Devices.Devices[0].Adopted);
        Assert.Null(second.Runtime.NotReadyReason);
        await second.DisposeAsync();
        first.DeleteFiles();
    }

    [Fact]
    public async Task AnAdoptionThatFailedAtStartIsTriedAgainWhenKubeletCallsForTheVolume()
    {
        var (first, second) = await RestartWhileTheStoreIsAwayAsync();
        Assert.False(first.Devices.Devices[0].Adopted);
        var refused = await Assert.ThrowsAsync<Grpc.Core.RpcException>(() => second.Service.NodeStageVolume(second.StageRequest(Volume), Ctx));
        Assert.Equal(Grpc.Core.StatusCode.FailedPrecondition, refused.StatusCode);

        first.Opener.Sizes["vol1"] = 64 << 20; // the store is back: kubelet's next retry heals the volume
        await second.Service.NodeStageVolume(second.StageRequest(Volume), Ctx);
        Assert.True(first.Devices.Devices[0].Adopted);
        await second.Service.NodeUnstageVolume(new NodeUnstageVolumeRequest { VolumeId = Volume, StagingTargetPath = second.StagingPath(Volume) }, Ctx);
        Assert.Equal(DeviceCondition.Absent, first.Devices.Devices[0].Condition);
        Assert.Null(new StagedVolumeStore(first.StateDirectory).TryRead(Volume));
        await second.DisposeAsync();
        first.DeleteFiles();
    }

    [Fact]
    public async Task RecordsOfAnotherBootOrOfAGoneDeviceAreRemoved()
    {
        var first = await FakeNode.StartAsync();
        await first.Service.NodeStageVolume(first.StageRequest(Volume), Ctx);
        await first.Service.NodeStageVolume(first.StageRequest("loc1/vol2"), Ctx);
        first.Devices.Crash();
        first.Devices.Devices.Remove(1); // someone deleted vol2's device

        var second = await FakeNode.StartAsync(first);
        Assert.Null(new StagedVolumeStore(first.StateDirectory).TryRead("loc1/vol2"));
        Assert.NotNull(new StagedVolumeStore(first.StateDirectory).TryRead(Volume));
        Assert.Contains(1, first.Devices.ForgottenRecords);
        await second.DisposeAsync();

        var afterReboot = await FakeNode.StartAsync(first, bootId: "boot-2");
        Assert.Empty(new StagedVolumeStore(first.StateDirectory).ReadAll());
        await afterReboot.DisposeAsync();
        first.DeleteFiles();
    }

    [Fact]
    public async Task QosLimitsAndMeteringSurviveAHandover()
    {
        var first = await FakeNode.StartAsync();
        var request = first.StageRequest(Volume);
        request.VolumeContext["maxIops"] = "400";
        await first.Service.NodeStageVolume(request, Ctx);
        var served = Assert.Single(first.Runtime.MetricsSources());
        Assert.Equal((400L, 0L), (served.Qos?.Limits.MaxIops, served.Recoveries));
        Assert.Equal("live", served.DeviceState);

        await first.DisposeAsync();
        var second = await FakeNode.StartAsync(first);

        var adopted = Assert.Single(second.Runtime.MetricsSources());
        Assert.Equal((400L, 1L), (adopted.Qos?.Limits.MaxIops, adopted.Recoveries));
        Assert.NotNull(adopted.LastAdoptionGapSeconds);
        Assert.InRange(adopted.LastAdoptionGapSeconds.Value, 0, 60);
        Assert.Equal("400", new StagedVolumeStore(first.StateDirectory).TryRead(Volume)!.QosParameters!["maxIops"]);
        await second.DisposeAsync();
        first.DeleteFiles();
    }

    [Fact]
    public async Task ADeviceWhoseStageDiedBeforeItsRecordIsDeletedAtTheNextStart()
    {
        var first = await FakeNode.StartAsync();
        await first.Service.NodeStageVolume(first.StageRequest(Volume), Ctx);
        await first.Service.NodeStageVolume(first.StageRequest("loc1/vol2"), Ctx);
        new StagedVolumeStore(first.StateDirectory).Delete("loc1/vol2"); // killed between the device's creation and the record
        first.Devices.Crash();

        var second = await FakeNode.StartAsync(first);

        Assert.True(first.Devices.Devices[0].Adopted);
        Assert.Equal(DeviceCondition.Absent, first.Devices.Devices[1].Condition);
        Assert.Equal([0], first.Devices.Records);
        await second.DisposeAsync();
        first.DeleteFiles();
    }

    [Fact]
    public async Task WhenTwoRecordsNameOneDeviceTheVolumeStagedLastIsAdoptedAndTheOtherRecordRemoved()
    {
        var first = await FakeNode.StartAsync();
        await first.Service.NodeStageVolume(first.StageRequest(Volume), Ctx);
        var records = new StagedVolumeStore(first.StateDirectory);
        var stale = records.TryRead(Volume)!;
        await first.Service.NodeUnstageVolume(new NodeUnstageVolumeRequest { VolumeId = Volume, StagingTargetPath = first.StagingPath(Volume) }, Ctx);
        await first.Service.NodeStageVolume(first.StageRequest("loc1/vol2"), Ctx); // the kernel gives it the freed id 0
        records.Write(stale, records.ReadSecrets("loc1/vol2")); // a record that outlived its device
        first.Devices.Crash();

        var second = await FakeNode.StartAsync(first);

        Assert.True(first.Devices.Devices[0].Adopted);
        Assert.Equal("vol2", second.Opener.Opens[^1].VolumeId);
        Assert.Null(records.TryRead(Volume));
        Assert.NotNull(records.TryRead("loc1/vol2"));
        Assert.Contains(0, first.Devices.Records);
        await second.DisposeAsync();
        first.DeleteFiles();
    }

    [Fact]
    public async Task AnAdoptionRetriedByNodeStageOpensTheStoreWithTheSecretsKubeletSendsNow()
    {
        var (first, second) = await RestartWhileTheStoreIsAwayAsync();
        first.Opener.Sizes["vol1"] = 64 << 20;
        var rotated = second.StageRequest(Volume);
        rotated.Secrets["token"] = "rotated";
        await second.Service.NodeStageVolume(rotated, Ctx);

        Assert.True(first.Devices.Devices[0].Adopted);
        Assert.Equal("rotated", second.Opener.Opens[^1].Secrets["token"]);
        Assert.Equal("rotated", new StagedVolumeStore(first.StateDirectory).ReadSecrets(Volume)["token"]);
        await second.DisposeAsync();
        first.DeleteFiles();
    }

    /// <summary>Stages the volume, kills the process, and starts the next one while the store cannot open the volume.</summary>
    private static async Task<(FakeNode First, FakeNode Second)> RestartWhileTheStoreIsAwayAsync()
    {
        var first = await FakeNode.StartAsync();
        await first.Service.NodeStageVolume(first.StageRequest(Volume), Ctx);
        first.Devices.Crash();
        first.Opener.Sizes.Remove("vol1");
        return (first, await FakeNode.StartAsync(first));
    }
}
