using Csi.V1;
using Grpc.Core;
using UblkCsi.Engine.Backends.Qos;
using UblkCsi.Stores;
using UblkCsi.TestSupport;
using static UblkCsi.Controller.Tests.Service.Csi;

namespace UblkCsi.Controller.Tests.Service;

public sealed class FileControllerModifyTests(FileStoreUnderTest store) : ControllerModifyTests(store), IClassFixture<FileStoreUnderTest>;

public sealed class S3ControllerModifyTests(S3StoreUnderTest store) : ControllerModifyTests(store), IClassFixture<S3StoreUnderTest>;

public sealed class RpcControllerModifyTests(RpcStoreUnderTest store) : ControllerModifyTests(store), IClassFixture<RpcStoreUnderTest>;

/// <summary>
/// QoS limits: given at creation (StorageClass keys, overridden by mutable parameters), carried to the
/// node in the volume context and the store's QoS record, and changed with ControllerModifyVolume.
/// </summary>
public abstract class ControllerModifyTests(StoreUnderTest store)
{
    private static readonly ServerCallContext Call = new TestCallContext();

    private ControllerHarness NewController()
    {
        var (parameters, secrets) = store.NewLocation();
        return new ControllerHarness(new ControllerServiceOptions("ublk.csi.test") { StoreTypes = store.StoreTypes }, parameters, secrets);
    }

    private static async Task<QosLimits> RecordedAsync(ControllerHarness c, string volumeId)
    {
        Assert.True(VolumeHandle.TryParse(volumeId, out var handle));
        var opened = UblkCsi.Stores.StoreRegistry.Open(c.Parameters["store"], c.Parameters.Where(p => p.Key != "store").ToDictionary(), c.Secrets);
        await using var _ = opened;
        return await ((IVolumeQosRecord)opened).GetQosAsync(handle.StoreId);
    }

    [Fact]
    public async Task QosKeysAreValidatedStrippedFromTheStoreAndCarriedToTheNode()
    {
        await using var c = NewController();
        var parameters = new Dictionary<string, string>(c.Parameters) { ["maxIops"] = "400", ["burstSeconds"] = "2" };
        var request = Create("pvc-qos", parameters, c.Secrets);
        request.MutableParameters.Add("maxIops", "800");
        request.MutableParameters.Add("maxWriteBytesPerSecond", "1048576");

        var volume = (await c.Service.CreateVolume(request, Call)).Volume;

        Assert.Equal("800", volume.VolumeContext["maxIops"]);
        Assert.Equal("1048576", volume.VolumeContext["maxWriteBytesPerSecond"]);
        Assert.Equal("2", volume.VolumeContext["burstSeconds"]);
        Assert.Equal(new QosLimits { MaxIops = 800, MaxWriteBytesPerSecond = 1048576, BurstSeconds = 2 }, await RecordedAsync(c, volume.VolumeId));
    }

    [Theory]
    [InlineData("maxIops", "0", "'maxIops'")]
    [InlineData("maxBytesPerSecond", "fast", "'maxBytesPerSecond'")]
    [InlineData("burstSeconds", "-1", "'burstSeconds'")]
    public async Task BadQosValuesAreInvalidArgumentNamingTheKey(string key, string value, string named)
    {
        await using var c = NewController();

        var e = await Fails(StatusCode.InvalidArgument, () => c.Service.CreateVolume(Create("pvc-bad", new Dictionary<string, string>(c.Parameters) { [key] = value }, c.Secrets), Call));

        Assert.Contains(named, e.Status.Detail);
        Assert.Contains("allowed", e.Status.Detail);
    }

    [Fact]
    public async Task ModifyReplacesTheRecordedLimits()
    {
        await using var c = NewController();
        var volume = (await c.Service.CreateVolume(Create("pvc-mod", new Dictionary<string, string>(c.Parameters) { ["maxIops"] = "400" }, c.Secrets), Call)).Volume;

        await c.Service.ControllerModifyVolume(
            new ControllerModifyVolumeRequest { VolumeId = volume.VolumeId, MutableParameters = { ["maxReadIops"] = "100" }, Secrets = { c.Secrets } }, Call);

        Assert.Equal(new QosLimits { MaxReadIops = 100 }, await RecordedAsync(c, volume.VolumeId));
        Assert.Contains(c.Logs.Entries, e => e.Message.Contains("QoS limits now", StringComparison.Ordinal) && e.Message.Contains("maxReadIops=100", StringComparison.Ordinal));
    }

    [Fact]
    public async Task ModifyValidatesBeforeTouchingAnything()
    {
        await using var c = NewController();
        var volume = (await c.Service.CreateVolume(Create("pvc-v", c.Parameters, c.Secrets), Call)).Volume;

        var noId = await Fails(StatusCode.InvalidArgument, () => c.Service.ControllerModifyVolume(
            new ControllerModifyVolumeRequest { MutableParameters = { ["maxIops"] = "1" } }, Call));
        await c.Service.ControllerModifyVolume(new ControllerModifyVolumeRequest { VolumeId = volume.VolumeId, Secrets = { c.Secrets } }, Call);
        var emptyForAbsent = await Fails(StatusCode.NotFound, () => c.Service.ControllerModifyVolume(
            new ControllerModifyVolumeRequest { VolumeId = volume.VolumeId.Replace("pvc-v", "pvc-gone", StringComparison.Ordinal), Secrets = { c.Secrets } }, Call));
        var immutable = await Fails(StatusCode.InvalidArgument, () => c.Service.ControllerModifyVolume(
            new ControllerModifyVolumeRequest { VolumeId = volume.VolumeId, MutableParameters = { ["root"] = "/elsewhere" } }, Call));
        var missing = await Fails(StatusCode.NotFound, () => c.Service.ControllerModifyVolume(
            new ControllerModifyVolumeRequest { VolumeId = volume.VolumeId.Replace("pvc-v", "pvc-absent", StringComparison.Ordinal), MutableParameters = { ["maxIops"] = "1" }, Secrets = { c.Secrets } }, Call));

        Assert.Contains("volume_id", noId.Status.Detail);
        Assert.Contains("pvc-gone", emptyForAbsent.Status.Detail);
        Assert.Contains("'root': is not a mutable parameter; allowed: maxIops", immutable.Status.Detail);
        Assert.Contains("pvc-absent", missing.Status.Detail);
        Assert.True((await RecordedAsync(c, volume.VolumeId)).IsUnlimited);
    }
}
