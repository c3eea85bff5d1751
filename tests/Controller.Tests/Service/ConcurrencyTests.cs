using Csi.V1;
using Grpc.Core;
using UblkCsi.Controller.Provisioning;
using UblkCsi.Engine;
using UblkCsi.Stores;
using UblkCsi.TestSupport;
using static UblkCsi.Controller.Tests.Service.Csi;

namespace UblkCsi.Controller.Tests.Service;

/// <summary>A call on a volume that is still being worked on is ABORTED, not run twice.</summary>
public sealed class ConcurrencyTests
{
    private static readonly ServerCallContext Call = new TestCallContext();
    private static readonly Dictionary<string, string> NoSecrets = [];

    [Fact]
    public async Task ADuplicateCreateWhileTheFirstRunsIsAbortedAndOtherNamesProceed()
    {
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var catalog = new StoreCatalog((type, parameters, secrets) => new GatedStore(StoreRegistry.Open(type, parameters, secrets), gate.Task));
        var parameters = new Dictionary<string, string> { ["store"] = "memory" };
        await using var c = new ControllerHarness(new ControllerServiceOptions("ublk.csi.test") { StoreTypes = ["memory"] }, parameters, [], catalog);

        var first = c.Service.CreateVolume(Create("pvc-slow", parameters, NoSecrets), Call);
        await Fails(StatusCode.Aborted, () => c.Service.CreateVolume(Create("pvc-slow", parameters, NoSecrets), Call));
        var other = c.Service.CreateVolume(Create("pvc-other", parameters, NoSecrets), Call);
        gate.SetResult();

        Assert.Equal(GiB, (await first).Volume.CapacityBytes);
        Assert.Equal(GiB, (await other).Volume.CapacityBytes);
        Assert.Equal((await first).Volume.VolumeId, (await c.Service.CreateVolume(Create("pvc-slow", parameters, NoSecrets), Call)).Volume.VolumeId);
    }

    /// <summary>Holds every volume creation until the gate opens.</summary>
    private sealed class GatedStore(IVolumeStore inner, Task gate) : IVolumeStore
    {
        public string Type => inner.Type;

        public string Description => inner.Description;

        public async Task<VolumeInfo> CreateVolumeAsync(Stores.CreateVolumeRequest request, CancellationToken cancellationToken = default)
        {
            await gate;
            return await inner.CreateVolumeAsync(request, cancellationToken);
        }

        public Task<bool> DeleteVolumeAsync(string volumeId, CancellationToken cancellationToken = default) => inner.DeleteVolumeAsync(volumeId, cancellationToken);

        public Task<VolumeInfo> GetVolumeAsync(string volumeId, CancellationToken cancellationToken = default) => inner.GetVolumeAsync(volumeId, cancellationToken);

        public Task<IReadOnlyList<VolumeInfo>> ListVolumesAsync(CancellationToken cancellationToken = default) => inner.ListVolumesAsync(cancellationToken);

        public Task<long> ExpandVolumeAsync(string volumeId, long newSizeBytes, CancellationToken cancellationToken = default) => inner.ExpandVolumeAsync(volumeId, newSizeBytes, cancellationToken);

        public Task<SnapshotInfo> CreateSnapshotAsync(string sourceVolumeId, string name, CancellationToken cancellationToken = default) => inner.CreateSnapshotAsync(sourceVolumeId, name, cancellationToken);

        public Task<bool> DeleteSnapshotAsync(string snapshotId, CancellationToken cancellationToken = default) => inner.DeleteSnapshotAsync(snapshotId, cancellationToken);

        public Task<SnapshotInfo> GetSnapshotAsync(string snapshotId, CancellationToken cancellationToken = default) => inner.GetSnapshotAsync(snapshotId, cancellationToken);

        public Task<IReadOnlyList<SnapshotInfo>> ListSnapshotsAsync(string? sourceVolumeId = null, CancellationToken cancellationToken = default) => inner.ListSnapshotsAsync(sourceVolumeId, cancellationToken);

        public Task<StoreCapacity> GetCapacityAsync(CancellationToken cancellationToken = default) => inner.GetCapacityAsync(cancellationToken);

        public Task<IBlockBackend> OpenVolumeAsync(string volumeId, VolumeAccess access = VolumeAccess.ReadWrite, CancellationToken cancellationToken = default) => inner.OpenVolumeAsync(volumeId, access, cancellationToken);

        public ValueTask DisposeAsync() => inner.DisposeAsync();
    }
}
