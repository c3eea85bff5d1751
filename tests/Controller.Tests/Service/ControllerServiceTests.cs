using Csi.V1;
using Grpc.Core;
using UblkCsi.Stores;
using UblkCsi.TestSupport;
using static UblkCsi.Controller.Tests.Service.Csi;
using Mode = Csi.V1.VolumeCapability.Types.AccessMode.Types.Mode;
using RpcType = Csi.V1.ControllerServiceCapability.Types.RPC.Types.Type;

namespace UblkCsi.Controller.Tests.Service;

public sealed class MemoryControllerTests(MemoryStoreUnderTest store) : ControllerServiceTests(store), IClassFixture<MemoryStoreUnderTest>;

public sealed class FileControllerTests(FileStoreUnderTest store) : ControllerServiceTests(store), IClassFixture<FileStoreUnderTest>;

public sealed class S3ControllerTests(S3StoreUnderTest store) : ControllerServiceTests(store), IClassFixture<S3StoreUnderTest>;

public sealed class RpcControllerTests(RpcStoreUnderTest store) : ControllerServiceTests(store), IClassFixture<RpcStoreUnderTest>;

/// <summary>
/// The Controller service as csi-sanity and the sidecars call it, against one store: every error code
/// path csi-sanity checks, plus idempotency, paging, publish records and statelessness.
/// </summary>
public abstract class ControllerServiceTests(StoreUnderTest store)
{
    private static readonly ServerCallContext Call = new TestCallContext();

    protected ControllerServiceOptions Options => new("ublk.csi.test") { StoreTypes = store.StoreTypes };

    private ControllerHarness NewController()
    {
        var (parameters, secrets) = store.NewLocation();
        return new ControllerHarness(Options, parameters, secrets);
    }

    private static async Task<Volume> CreateAsync(ControllerHarness c, string name, long size = GiB) =>
        (await c.Service.CreateVolume(Create(name, c.Parameters, c.Secrets, size), Call)).Volume;

    private static async Task<Snapshot> SnapshotAsync(ControllerHarness c, string name, string sourceVolumeId) =>
        (await c.Service.CreateSnapshot(new CreateSnapshotRequest { Name = name, SourceVolumeId = sourceVolumeId, Secrets = { c.Secrets } }, Call)).Snapshot;

    private static ControllerPublishVolumeRequest Publish(ControllerHarness c, string volumeId, string node, bool readOnly = false) => new()
    {
        VolumeId = volumeId,
        NodeId = node,
        VolumeCapability = Mount(),
        Readonly = readOnly,
        Secrets = { c.Secrets },
    };

    [Fact]
    public async Task CapabilitiesAreEverythingTheIssueNames()
    {
        await using var c = NewController();

        var response = await c.Service.ControllerGetCapabilities(new ControllerGetCapabilitiesRequest(), Call);

        Assert.Equal(
            new[]
            {
                RpcType.CreateDeleteVolume, RpcType.CreateDeleteSnapshot, RpcType.ListSnapshots, RpcType.CloneVolume, RpcType.ExpandVolume,
                RpcType.ListVolumes, RpcType.ListVolumesPublishedNodes, RpcType.GetCapacity, RpcType.GetVolume, RpcType.VolumeCondition,
                RpcType.PublishUnpublishVolume, RpcType.SingleNodeMultiWriter, RpcType.ModifyVolume,
            }.Order(),
            response.Capabilities.Select(x => x.Rpc.Type).Order());
    }

    // ---- CreateVolume ----

    [Fact]
    public async Task CreateWithoutNameOrCapabilitiesIsInvalidArgument()
    {
        await using var c = NewController();

        await Fails(StatusCode.InvalidArgument, () => c.Service.CreateVolume(Create("", c.Parameters, c.Secrets), Call));
        var noCaps = Create("v", c.Parameters, c.Secrets);
        noCaps.VolumeCapabilities.Clear();
        await Fails(StatusCode.InvalidArgument, () => c.Service.CreateVolume(noCaps, Call));
        var noMode = Create("v", c.Parameters, c.Secrets);
        noMode.VolumeCapabilities[0].AccessMode = null;
        await Fails(StatusCode.InvalidArgument, () => c.Service.CreateVolume(noMode, Call));
    }

    [Fact]
    public async Task StoreParameterSelectsTheStoreAndNamesTheAllowedTypes()
    {
        await using var c = NewController();
        var without = new Dictionary<string, string>(c.Parameters);
        without.Remove("store");

        var missing = await Fails(StatusCode.InvalidArgument, () => c.Service.CreateVolume(Create("v", without, c.Secrets), Call));
        var wrong = await Fails(StatusCode.InvalidArgument, () => c.Service.CreateVolume(Create("v", new Dictionary<string, string>(c.Parameters) { ["store"] = "nfs" }, c.Secrets), Call));

        Assert.Contains("'store'", missing.Status.Detail);
        Assert.Contains("file, s3, rpc", missing.Status.Detail);
        Assert.Contains("'nfs'", wrong.Status.Detail);
    }

    [Fact]
    public async Task UnknownOrBadStoreParameterIsInvalidArgumentNamingIt()
    {
        await using var c = NewController();

        var unknown = await Fails(StatusCode.InvalidArgument,
            () => c.Service.CreateVolume(Create("v", new Dictionary<string, string>(c.Parameters) { ["colour"] = "blue" }, c.Secrets), Call));

        Assert.Contains("'colour'", unknown.Status.Detail);
        Assert.Contains("allowed", unknown.Status.Detail);
    }

    [Fact]
    public async Task SidecarKeysAreStrippedAndTheContextCarriesTheStoreParametersWithoutSecrets()
    {
        await using var c = NewController();
        var parameters = new Dictionary<string, string>(c.Parameters)
        {
            ["csi.storage.k8s.io/pvc/name"] = "data",
            ["csi.storage.k8s.io/pvc/namespace"] = "team-a",
            ["csi.storage.k8s.io/pv/name"] = "pvc-1",
        };

        var volume = (await c.Service.CreateVolume(Create("pvc-1", parameters, c.Secrets), Call)).Volume;

        Assert.Equal(c.Parameters.OrderBy(p => p.Key), volume.VolumeContext.OrderBy(p => p.Key));
        foreach (var secret in c.Secrets.Values)
        {
            Assert.DoesNotContain(secret, volume.VolumeContext.Values);
            Assert.DoesNotContain(secret, c.Logs.AllText, StringComparison.Ordinal);
            Assert.DoesNotContain(secret, volume.VolumeId, StringComparison.Ordinal);
        }

        Assert.True(VolumeHandle.TryParse(volume.VolumeId, out var handle));
        Assert.Equal("pvc-1", handle.StoreId);
        Assert.StartsWith(c.Parameters["store"] + ":", handle.Locator);
    }

    [Theory]
    [InlineData(0, 0, GiB)] // no range: the default size
    [InlineData(GiB + 1, 0, GiB + 4096)] // rounded up to 4 KiB
    [InlineData(0, 2 * GiB, GiB)] // only a limit: the default fits under it
    [InlineData(0, 10000, 8192)] // only a small limit: the largest multiple under it
    [InlineData(5000, 8192, 8192)]
    public async Task CapacityRangeIsHonouredAndRounded(long required, long limit, long expected)
    {
        await using var c = NewController();

        var volume = (await c.Service.CreateVolume(Create("v", c.Parameters, c.Secrets, required, limit), Call)).Volume;

        Assert.Equal(expected, volume.CapacityBytes);
    }

    [Theory]
    [InlineData(5000, 6000, StatusCode.OutOfRange)] // no multiple of 4 KiB in range
    [InlineData(0, 100, StatusCode.OutOfRange)]
    [InlineData(2 * GiB, GiB, StatusCode.InvalidArgument)] // required above limit
    [InlineData(-1, 0, StatusCode.InvalidArgument)]
    [InlineData((64L << 40) + 1, 0, StatusCode.OutOfRange)] // above the 64 TiB maximum
    public async Task ImpossibleCapacityRangesFailWithTheSpecCode(long required, long limit, StatusCode code)
    {
        await using var c = NewController();

        await Fails(code, () => c.Service.CreateVolume(Create("v", c.Parameters, c.Secrets, required, limit), Call));
    }

    [Fact]
    public async Task CreateIsIdempotentOnTheNameAndRefusesADifferentSize()
    {
        await using var c = NewController();

        var first = await CreateAsync(c, "pvc-same", 2 * GiB);
        var again = await CreateAsync(c, "pvc-same", 2 * GiB);
        var within = (await c.Service.CreateVolume(Create("pvc-same", c.Parameters, c.Secrets, GiB, 4 * GiB), Call)).Volume;
        var e = await Fails(StatusCode.AlreadyExists, () => c.Service.CreateVolume(Create("pvc-same", c.Parameters, c.Secrets, 3 * GiB, 3 * GiB), Call));

        Assert.Equal(first.VolumeId, again.VolumeId);
        Assert.Equal(first.VolumeId, within.VolumeId);
        Assert.Equal(2 * GiB, within.CapacityBytes);
        Assert.Contains("pvc-same", e.Status.Detail);
    }

    [Fact]
    public async Task MaximumLengthNameIsAccepted()
    {
        await using var c = NewController();
        var name = "sanity-maxlen-" + new string('x', 128 - 14);

        var volume = await CreateAsync(c, name);

        Assert.True(volume.VolumeId.Length <= VolumeHandle.MaxBytes);
        Assert.Equal(volume.VolumeId, (await CreateAsync(c, name)).VolumeId);
    }

    [Fact]
    public async Task UnsupportedCapabilitiesAreInvalidArgument()
    {
        await using var c = NewController();
        var multi = Create("v", c.Parameters, c.Secrets);
        multi.VolumeCapabilities[0] = Mount(Mode.MultiNodeMultiWriter);
        var fs = Create("v", c.Parameters, c.Secrets);
        fs.VolumeCapabilities[0] = Mount(fsType: "ntfs");

        await Fails(StatusCode.InvalidArgument, () => c.Service.CreateVolume(multi, Call));
        await Fails(StatusCode.InvalidArgument, () => c.Service.CreateVolume(fs, Call));
    }

    [Fact]
    public async Task RestoreAndCloneTakeTheSourceSizeAndEchoTheSource()
    {
        await using var c = NewController();
        var source = await CreateAsync(c, "src", 2 * GiB);
        var snapshot = await SnapshotAsync(c, "snap", source.VolumeId);

        var restore = Create("restored", c.Parameters, c.Secrets, required: 0);
        restore.VolumeContentSource = new VolumeContentSource { Snapshot = new() { SnapshotId = snapshot.SnapshotId } };
        var restored = (await c.Service.CreateVolume(restore, Call)).Volume;
        var clone = Create("cloned", c.Parameters, c.Secrets, required: GiB); // smaller than the source: the source wins
        clone.VolumeContentSource = new VolumeContentSource { Volume = new() { VolumeId = source.VolumeId } };
        var cloned = (await c.Service.CreateVolume(clone, Call)).Volume;

        Assert.Equal(2 * GiB, restored.CapacityBytes);
        Assert.Equal(snapshot.SnapshotId, restored.ContentSource.Snapshot.SnapshotId);
        Assert.Equal(2 * GiB, cloned.CapacityBytes);
        Assert.Equal(source.VolumeId, cloned.ContentSource.Volume.VolumeId);
        var listed = await c.Service.ControllerGetVolume(new ControllerGetVolumeRequest { VolumeId = restored.VolumeId }, Call);
        Assert.Equal(snapshot.SnapshotId, listed.Volume.ContentSource.Snapshot.SnapshotId);
    }

    [Fact]
    public async Task MissingSourcesAreNotFoundAndSourcesFromAnotherStoreAreRefused()
    {
        await using var c = NewController();
        await using var other = NewController();
        var foreign = await CreateAsync(other, "elsewhere");
        var locator = VolumeHandle.TryParse(foreign.VolumeId, out var h) ? h.Locator : "";

        var noSnapshot = Create("a", c.Parameters, c.Secrets);
        noSnapshot.VolumeContentSource = new VolumeContentSource { Snapshot = new() { SnapshotId = "fake-snapshot-id" } };
        var absentSnapshot = Create("b", c.Parameters, c.Secrets);
        absentSnapshot.VolumeContentSource = new VolumeContentSource { Snapshot = new() { SnapshotId = VolumeIdIn(c, "no-such-snapshot") } };
        var absentVolume = Create("c", c.Parameters, c.Secrets);
        absentVolume.VolumeContentSource = new VolumeContentSource { Volume = new() { VolumeId = VolumeIdIn(c, "no-such-volume") } };
        var crossStore = Create("d", c.Parameters, c.Secrets);
        crossStore.VolumeContentSource = new VolumeContentSource { Volume = new() { VolumeId = foreign.VolumeId } };

        await Fails(StatusCode.NotFound, () => c.Service.CreateVolume(noSnapshot, Call));
        await Fails(StatusCode.NotFound, () => c.Service.CreateVolume(absentSnapshot, Call));
        await Fails(StatusCode.NotFound, () => c.Service.CreateVolume(absentVolume, Call));
        var e = await Fails(StatusCode.InvalidArgument, () => c.Service.CreateVolume(crossStore, Call));
        Assert.Contains(locator, e.Status.Detail);
    }

    /// <summary>A well-formed ID in this test's store for something that does not exist.</summary>
    private static string VolumeIdIn(ControllerHarness c, string storeId)
    {
        var type = c.Parameters["store"];
        var storeParameters = new Dictionary<string, string>(c.Parameters);
        storeParameters.Remove("store");
        return new VolumeHandle(UblkCsi.Controller.Provisioning.StoreLocator.From(type, storeParameters, null).ToString(), storeId).ToString();
    }

    // ---- DeleteVolume ----

    [Fact]
    public async Task DeleteNeedsAnIdSucceedsForUnknownIdsAndIsIdempotent()
    {
        await using var c = NewController();
        var volume = await CreateAsync(c, "doomed");

        await Fails(StatusCode.InvalidArgument, () => c.Service.DeleteVolume(new DeleteVolumeRequest(), Call));
        await c.Service.DeleteVolume(new DeleteVolumeRequest { VolumeId = "fake-vol-id" }, Call);
        await c.Service.DeleteVolume(new DeleteVolumeRequest { VolumeId = VolumeIdIn(c, "never-existed") }, Call);
        await c.Service.DeleteVolume(new DeleteVolumeRequest { VolumeId = volume.VolumeId, Secrets = { c.Secrets } }, Call);
        await c.Service.DeleteVolume(new DeleteVolumeRequest { VolumeId = volume.VolumeId, Secrets = { c.Secrets } }, Call);

        await Fails(StatusCode.NotFound, () => c.Service.ControllerGetVolume(new ControllerGetVolumeRequest { VolumeId = volume.VolumeId }, Call));
    }

    [Fact]
    public async Task AFreshControllerDeletesFromTheIdAlone()
    {
        await using var c = NewController();
        var volume = await CreateAsync(c, "stateless");
        await using var restarted = c.Restarted(Options, store.SurvivesRestart);

        await restarted.Service.DeleteVolume(new DeleteVolumeRequest { VolumeId = volume.VolumeId, Secrets = { c.Secrets } }, Call);

        await Fails(StatusCode.NotFound, () => c.Service.ControllerGetVolume(new ControllerGetVolumeRequest { VolumeId = volume.VolumeId }, Call));
    }

    // ---- ValidateVolumeCapabilities ----

    [Fact]
    public async Task ValidateConfirmsSupportedCapabilitiesOnly()
    {
        await using var c = NewController();
        var volume = await CreateAsync(c, "validated");

        await Fails(StatusCode.InvalidArgument, () => c.Service.ValidateVolumeCapabilities(new ValidateVolumeCapabilitiesRequest { VolumeCapabilities = { Mount() } }, Call));
        await Fails(StatusCode.InvalidArgument, () => c.Service.ValidateVolumeCapabilities(new ValidateVolumeCapabilitiesRequest { VolumeId = volume.VolumeId }, Call));
        await Fails(StatusCode.NotFound, () => c.Service.ValidateVolumeCapabilities(new ValidateVolumeCapabilitiesRequest { VolumeId = "fake-vol-id-1234", VolumeCapabilities = { Mount() } }, Call));
        await Fails(StatusCode.NotFound, () => c.Service.ValidateVolumeCapabilities(new ValidateVolumeCapabilitiesRequest { VolumeId = VolumeIdIn(c, "gone"), VolumeCapabilities = { Mount() } }, Call));

        var ok = await c.Service.ValidateVolumeCapabilities(new ValidateVolumeCapabilitiesRequest { VolumeId = volume.VolumeId, VolumeCapabilities = { Mount(), Block(Mode.SingleNodeReaderOnly) } }, Call);
        var no = await c.Service.ValidateVolumeCapabilities(new ValidateVolumeCapabilitiesRequest { VolumeId = volume.VolumeId, VolumeCapabilities = { Mount(Mode.MultiNodeMultiWriter) } }, Call);

        Assert.Equal(2, ok.Confirmed.VolumeCapabilities.Count);
        Assert.Null(no.Confirmed);
        Assert.Contains("MultiNodeMultiWriter", no.Message);
    }

    // ---- ControllerExpandVolume ----

    [Fact]
    public async Task ExpandGrowsNeverShrinksAndAsksTheNodeToFollow()
    {
        await using var c = NewController();
        var volume = await CreateAsync(c, "growing");

        await Fails(StatusCode.InvalidArgument, () => c.Service.ControllerExpandVolume(new ControllerExpandVolumeRequest { CapacityRange = new() { RequiredBytes = 2 * GiB } }, Call));
        await Fails(StatusCode.InvalidArgument, () => c.Service.ControllerExpandVolume(new ControllerExpandVolumeRequest { VolumeId = volume.VolumeId }, Call));
        await Fails(StatusCode.NotFound, () => c.Service.ControllerExpandVolume(new ControllerExpandVolumeRequest { VolumeId = VolumeIdIn(c, "gone"), CapacityRange = new() { RequiredBytes = 2 * GiB } }, Call));

        var grown = await c.Service.ControllerExpandVolume(new ControllerExpandVolumeRequest { VolumeId = volume.VolumeId, CapacityRange = new() { RequiredBytes = 11 * GiB }, VolumeCapability = Mount() }, Call);
        var same = await c.Service.ControllerExpandVolume(new ControllerExpandVolumeRequest { VolumeId = volume.VolumeId, CapacityRange = new() { RequiredBytes = GiB } }, Call);

        Assert.Equal(11 * GiB, grown.CapacityBytes);
        Assert.True(grown.NodeExpansionRequired);
        Assert.Equal(11 * GiB, same.CapacityBytes);
    }

    // ---- ListVolumes / ControllerGetVolume ----

    [Fact]
    public async Task ListVolumesShowsNewVolumesDropsDeletedOnesAndRejectsForeignTokens()
    {
        await using var c = NewController();
        await CreateAsync(c, "seed");
        var before = (await c.Service.ListVolumes(new ListVolumesRequest(), Call)).Entries.Count;

        var volume = await CreateAsync(c, "listed");
        var during = await c.Service.ListVolumes(new ListVolumesRequest(), Call);
        await c.Service.DeleteVolume(new DeleteVolumeRequest { VolumeId = volume.VolumeId, Secrets = { c.Secrets } }, Call);
        var after = await c.Service.ListVolumes(new ListVolumesRequest(), Call);

        Assert.Equal(before + 1, during.Entries.Count);
        Assert.Contains(during.Entries, e => e.Volume.VolumeId == volume.VolumeId && e.Volume.CapacityBytes == GiB);
        Assert.Equal(before, after.Entries.Count);
        await Fails(StatusCode.Aborted, () => c.Service.ListVolumes(new ListVolumesRequest { StartingToken = "invalid-token" }, Call));
        await Fails(StatusCode.InvalidArgument, () => c.Service.ListVolumes(new ListVolumesRequest { MaxEntries = -1 }, Call));
    }

    [Fact]
    public async Task ListVolumesPagesCoverEveryVolumeOnceEvenWhenThePageEndIsDeleted()
    {
        await using var c = NewController();
        for (var i = 0; i < 5; i++)
        {
            await CreateAsync(c, $"page-{i}");
        }

        var first = await c.Service.ListVolumes(new ListVolumesRequest { MaxEntries = 2 }, Call);
        await c.Service.DeleteVolume(new DeleteVolumeRequest { VolumeId = first.Entries[^1].Volume.VolumeId, Secrets = { c.Secrets } }, Call);
        var second = await c.Service.ListVolumes(new ListVolumesRequest { MaxEntries = 2, StartingToken = first.NextToken }, Call);
        var rest = await c.Service.ListVolumes(new ListVolumesRequest { StartingToken = second.NextToken }, Call);

        Assert.Equal(2, first.Entries.Count);
        Assert.NotEmpty(first.NextToken);
        var all = first.Entries.Concat(second.Entries).Concat(rest.Entries).Select(e => e.Volume.VolumeId).ToList();
        Assert.Equal(5, all.Count);
        Assert.Equal(all.Distinct().Count(), all.Count);
        Assert.Empty(rest.NextToken);
    }

    [Fact]
    public async Task GetVolumeReportsPublishedNodesAndANormalCondition()
    {
        await using var c = NewController();
        var volume = await CreateAsync(c, "observed");
        await c.Service.ControllerPublishVolume(Publish(c, volume.VolumeId, "node-a"), Call);

        var got = await c.Service.ControllerGetVolume(new ControllerGetVolumeRequest { VolumeId = volume.VolumeId }, Call);
        var listed = await c.Service.ListVolumes(new ListVolumesRequest(), Call);

        Assert.Equal(GiB, got.Volume.CapacityBytes);
        Assert.Equal(["node-a"], got.Status.PublishedNodeIds);
        Assert.False(got.Status.VolumeCondition.Abnormal);
        Assert.Equal(["node-a"], listed.Entries.Single(e => e.Volume.VolumeId == volume.VolumeId).Status.PublishedNodeIds);
        await Fails(StatusCode.NotFound, () => c.Service.ControllerGetVolume(new ControllerGetVolumeRequest { VolumeId = "fake-vol-id" }, Call));
        await Fails(StatusCode.InvalidArgument, () => c.Service.ControllerGetVolume(new ControllerGetVolumeRequest(), Call));
    }

    // ---- Snapshots ----

    [Fact]
    public async Task CreateSnapshotValidatesAndIsIdempotentPerSource()
    {
        await using var c = NewController();
        var a = await CreateAsync(c, "snap-src-a");
        var b = await CreateAsync(c, "snap-src-b");

        await Fails(StatusCode.InvalidArgument, () => c.Service.CreateSnapshot(new CreateSnapshotRequest { SourceVolumeId = a.VolumeId }, Call));
        await Fails(StatusCode.InvalidArgument, () => c.Service.CreateSnapshot(new CreateSnapshotRequest { Name = "s" }, Call));
        await Fails(StatusCode.InvalidArgument, () => c.Service.CreateSnapshot(new CreateSnapshotRequest { Name = "s", SourceVolumeId = a.VolumeId, Parameters = { ["speed"] = "fast" } }, Call));
        await Fails(StatusCode.NotFound, () => c.Service.CreateSnapshot(new CreateSnapshotRequest { Name = "s", SourceVolumeId = VolumeIdIn(c, "gone") }, Call));

        var first = await SnapshotAsync(c, "snapshot-1", a.VolumeId);
        var again = await SnapshotAsync(c, "snapshot-1", a.VolumeId);
        await Fails(StatusCode.AlreadyExists, () => SnapshotAsync(c, "snapshot-1", b.VolumeId));

        Assert.Equal(first.SnapshotId, again.SnapshotId);
        Assert.Equal(a.VolumeId, first.SourceVolumeId);
        Assert.True(first.ReadyToUse);
        Assert.Equal(GiB, first.SizeBytes);
        Assert.True(first.CreationTime.ToDateTimeOffset() > DateTimeOffset.UtcNow.AddMinutes(-5));
    }

    [Fact]
    public async Task ListSnapshotsFiltersByIdAndSourceAndPages()
    {
        await using var c = NewController();
        var snapshots = new List<Snapshot>();
        for (var i = 0; i < 5; i++)
        {
            var volume = await CreateAsync(c, $"ls-vol-{i}");
            snapshots.Add(await SnapshotAsync(c, $"ls-snap-{i}", volume.VolumeId));
        }

        var byId = await c.Service.ListSnapshots(new ListSnapshotsRequest { SnapshotId = snapshots[2].SnapshotId }, Call);
        var bySource = await c.Service.ListSnapshots(new ListSnapshotsRequest { SourceVolumeId = snapshots[3].SourceVolumeId }, Call);
        var noId = await c.Service.ListSnapshots(new ListSnapshotsRequest { SnapshotId = "none-exist-id" }, Call);
        var noSource = await c.Service.ListSnapshots(new ListSnapshotsRequest { SourceVolumeId = "fake-vol-id-0123456789" }, Call);
        var absentInStore = await c.Service.ListSnapshots(new ListSnapshotsRequest { SnapshotId = VolumeIdIn(c, "gone") }, Call);
        var page = await c.Service.ListSnapshots(new ListSnapshotsRequest { MaxEntries = 2 }, Call);
        var rest = await c.Service.ListSnapshots(new ListSnapshotsRequest { StartingToken = page.NextToken }, Call);

        Assert.Equal(snapshots[2].SnapshotId, byId.Entries.Single().Snapshot.SnapshotId);
        Assert.Equal(snapshots[3].SnapshotId, bySource.Entries.Single().Snapshot.SnapshotId);
        Assert.Empty(noId.Entries);
        Assert.Empty(noSource.Entries);
        Assert.Empty(absentInStore.Entries);
        Assert.Equal(2, page.Entries.Count);
        Assert.Equal(3, rest.Entries.Count);
        Assert.Equal(snapshots.Select(s => s.SnapshotId).Order(StringComparer.Ordinal), page.Entries.Concat(rest.Entries).Select(e => e.Snapshot.SnapshotId));
        await Fails(StatusCode.Aborted, () => c.Service.ListSnapshots(new ListSnapshotsRequest { StartingToken = "invalid-token" }, Call));
    }

    [Fact]
    public async Task DeleteSnapshotNeedsAnIdAndSucceedsForUnknownOnes()
    {
        await using var c = NewController();
        var volume = await CreateAsync(c, "snap-del-src");
        var snapshot = await SnapshotAsync(c, "snap-del", volume.VolumeId);

        await Fails(StatusCode.InvalidArgument, () => c.Service.DeleteSnapshot(new DeleteSnapshotRequest(), Call));
        await c.Service.DeleteSnapshot(new DeleteSnapshotRequest { SnapshotId = "fake-snapshot-id" }, Call);
        await c.Service.DeleteSnapshot(new DeleteSnapshotRequest { SnapshotId = snapshot.SnapshotId, Secrets = { c.Secrets } }, Call);
        await c.Service.DeleteSnapshot(new DeleteSnapshotRequest { SnapshotId = snapshot.SnapshotId, Secrets = { c.Secrets } }, Call);

        Assert.Empty((await c.Service.ListSnapshots(new ListSnapshotsRequest { SnapshotId = snapshot.SnapshotId }, Call)).Entries);
    }

    [Fact]
    public async Task DeletingTheSourceKeepsItsSnapshotsRestorable()
    {
        await using var c = NewController();
        var volume = await CreateAsync(c, "short-lived");
        var snapshot = await SnapshotAsync(c, "long-lived", volume.VolumeId);
        await c.Service.DeleteVolume(new DeleteVolumeRequest { VolumeId = volume.VolumeId, Secrets = { c.Secrets } }, Call);

        var restore = Create("reborn", c.Parameters, c.Secrets, required: 0);
        restore.VolumeContentSource = new VolumeContentSource { Snapshot = new() { SnapshotId = snapshot.SnapshotId } };

        Assert.Equal(GiB, (await c.Service.CreateVolume(restore, Call)).Volume.CapacityBytes);
    }

    // ---- ControllerPublish / Unpublish ----

    [Fact]
    public async Task PublishValidatesItsArguments()
    {
        await using var c = NewController();
        var volume = await CreateAsync(c, "pub-args");

        await Fails(StatusCode.InvalidArgument, () => c.Service.ControllerPublishVolume(new ControllerPublishVolumeRequest { NodeId = "n", VolumeCapability = Mount() }, Call));
        await Fails(StatusCode.InvalidArgument, () => c.Service.ControllerPublishVolume(new ControllerPublishVolumeRequest { VolumeId = volume.VolumeId, VolumeCapability = Mount() }, Call));
        await Fails(StatusCode.InvalidArgument, () => c.Service.ControllerPublishVolume(new ControllerPublishVolumeRequest { VolumeId = volume.VolumeId, NodeId = "n" }, Call));
        await Fails(StatusCode.NotFound, () => c.Service.ControllerPublishVolume(Publish(c, "fake-vol-id-1", "n"), Call));
        await Fails(StatusCode.NotFound, () => c.Service.ControllerPublishVolume(Publish(c, VolumeIdIn(c, "gone"), "n"), Call));
        await Fails(StatusCode.InvalidArgument, () => c.Service.ControllerUnpublishVolume(new ControllerUnpublishVolumeRequest { NodeId = "n" }, Call));
    }

    [Fact]
    public async Task OneNodeAtATimeIdempotentOnTheSameNode()
    {
        await using var c = NewController();
        var volume = await CreateAsync(c, "single-writer");

        await c.Service.ControllerPublishVolume(Publish(c, volume.VolumeId, "node-a"), Call);
        await c.Service.ControllerPublishVolume(Publish(c, volume.VolumeId, "node-a"), Call);
        var second = await Fails(StatusCode.FailedPrecondition, () => c.Service.ControllerPublishVolume(Publish(c, volume.VolumeId, "node-b"), Call));
        await Fails(StatusCode.AlreadyExists, () => c.Service.ControllerPublishVolume(Publish(c, volume.VolumeId, "node-a", readOnly: true), Call));
        await Fails(StatusCode.FailedPrecondition, () => c.Service.DeleteVolume(new DeleteVolumeRequest { VolumeId = volume.VolumeId, Secrets = { c.Secrets } }, Call));

        // A controller that restarted (or another replica) sees the record: it lives in the store.
        await using var restarted = c.Restarted(Options, store.SurvivesRestart);
        await Fails(StatusCode.FailedPrecondition, () => restarted.Service.ControllerPublishVolume(Publish(c, volume.VolumeId, "node-b"), Call));
        await restarted.Service.ControllerUnpublishVolume(new ControllerUnpublishVolumeRequest { VolumeId = volume.VolumeId, NodeId = "node-a", Secrets = { c.Secrets } }, Call);
        await restarted.Service.ControllerUnpublishVolume(new ControllerUnpublishVolumeRequest { VolumeId = volume.VolumeId, NodeId = "node-a", Secrets = { c.Secrets } }, Call);
        await c.Service.ControllerPublishVolume(Publish(c, volume.VolumeId, "node-b"), Call);

        Assert.Contains("node-a", second.Status.Detail);
        var got = await c.Service.ControllerGetVolume(new ControllerGetVolumeRequest { VolumeId = volume.VolumeId }, Call);
        Assert.Equal(["node-b"], got.Status.PublishedNodeIds);
    }

    [Fact]
    public async Task UnpublishWithoutANodeReleasesEveryNodeAndUnknownVolumesSucceed()
    {
        await using var c = NewController();
        var volume = await CreateAsync(c, "released");
        await c.Service.ControllerPublishVolume(Publish(c, volume.VolumeId, "node-a"), Call);

        await c.Service.ControllerUnpublishVolume(new ControllerUnpublishVolumeRequest { VolumeId = volume.VolumeId }, Call);
        await c.Service.ControllerUnpublishVolume(new ControllerUnpublishVolumeRequest { VolumeId = "fake-vol-id", NodeId = "node-a" }, Call);
        await c.Service.ControllerUnpublishVolume(new ControllerUnpublishVolumeRequest { VolumeId = VolumeIdIn(c, "gone"), NodeId = "node-a" }, Call);
        await c.Service.DeleteVolume(new DeleteVolumeRequest { VolumeId = volume.VolumeId, Secrets = { c.Secrets } }, Call);

        Assert.DoesNotContain((await c.Service.ListVolumes(new ListVolumesRequest(), Call)).Entries, e => e.Volume.VolumeId == volume.VolumeId);
    }

    [Fact]
    public async Task PublishToANodeOutsideTheKnownSetIsNotFound()
    {
        var (parameters, secrets) = store.NewLocation();
        await using var c = new ControllerHarness(Options with { KnownNodes = new HashSet<string> { "node-a" } }, parameters, secrets);
        var volume = await CreateAsync(c, "known-nodes");

        await Fails(StatusCode.NotFound, () => c.Service.ControllerPublishVolume(Publish(c, volume.VolumeId, "fake-node-id-1"), Call));
        await c.Service.ControllerPublishVolume(Publish(c, volume.VolumeId, "node-a"), Call);
    }

    // ---- GetCapacity ----

    [Fact]
    public async Task GetCapacityAnswersPerStoreAndValidatesParameters()
    {
        await using var c = NewController();

        var none = await c.Service.GetCapacity(new GetCapacityRequest(), Call);
        var mine = await c.Service.GetCapacity(new GetCapacityRequest { Parameters = { c.Parameters }, VolumeCapabilities = { Mount() } }, Call);
        var unsupported = await c.Service.GetCapacity(new GetCapacityRequest { Parameters = { c.Parameters }, VolumeCapabilities = { Mount(Mode.MultiNodeMultiWriter) } }, Call);
        await Fails(StatusCode.InvalidArgument, () => c.Service.GetCapacity(new GetCapacityRequest { Parameters = { ["store"] = "tape" } }, Call));

        Assert.Equal(0, none.AvailableCapacity);
        Assert.True(mine.AvailableCapacity > 0);
        Assert.True(mine.MaximumVolumeSize is > 0 && mine.MaximumVolumeSize <= mine.AvailableCapacity);
        Assert.Equal(4096, mine.MinimumVolumeSize);
        Assert.Equal(0, unsupported.AvailableCapacity);
    }
}
