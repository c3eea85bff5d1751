using Microsoft.Extensions.Logging;
using UblkCsi.Engine;
using UblkCsi.GrpcEndpoints;
using UblkCsi.Stores.Rpc;

namespace UblkCsi.Stores.Nbd;

/// <summary>Where an nbd store's exports are served.</summary>
/// <param name="Endpoint">The NBD server.</param>
/// <param name="Export">The export every volume of this store opens; null: the volume ID names the export.</param>
/// <param name="Connections">Parallel connections per volume; null: one per engine queue (up to 8).</param>
/// <param name="Tls">TLS (NBD_OPT_STARTTLS) toward the server, or null for cleartext.</param>
public sealed record NbdStoreOptions(GrpcEndpoint Endpoint, string? Export = null, int? Connections = null, RpcTls? Tls = null);

/// <summary>
/// The "nbd" store: exports of any NBD server (nbdkit, qemu-nbd, nbd-server, storage gateways) as
/// volumes. NBD has no volume management, so the control path only opens exports: volumes are
/// provisioned statically (a PersistentVolume naming the endpoint and export), and creating,
/// deleting, expanding or snapshotting through the driver is refused with a message saying so.
/// </summary>
public sealed class NbdStore(NbdStoreOptions options, ILogger logger) : IVolumeStore
{
    private const string Static = "nbd exports are provisioned statically: NBD has no volume management, so create a PersistentVolume " +
        "whose volumeAttributes name the endpoint and export (see src/Stores/README.md, 'nbd')";

    public NbdStoreOptions Options { get; } = options;

    public string Type => NbdStoreProvider.TypeName;

    public string Description => $"nbd endpoint={Options.Endpoint}" + (Options.Export is null ? "" : $" export={Options.Export}") + (Options.Tls is null ? "" : " tls=on");

    public Task<VolumeInfo> CreateVolumeAsync(CreateVolumeRequest request, CancellationToken cancellationToken = default) =>
        throw new StoreException(StoreErrorCode.InvalidArgument, $"cannot create volume '{request?.Name}': {Static}");

    public Task<bool> DeleteVolumeAsync(string volumeId, CancellationToken cancellationToken = default) =>
        throw new StoreException(StoreErrorCode.FailedPrecondition,
            $"cannot delete volume '{volumeId}': the driver never deletes NBD exports; give the PersistentVolume persistentVolumeReclaimPolicy: Retain and remove the export on the server");

    public async Task<VolumeInfo> GetVolumeAsync(string volumeId, CancellationToken cancellationToken = default)
    {
        await using var client = await ConnectAsync(volumeId, readOnly: true, cancellationToken).ConfigureAwait(false);
        return new VolumeInfo(volumeId, client.Export.Name, client.Export.UsableSizeBytes, DateTimeOffset.UnixEpoch, null);
    }

    /// <summary>Empty: exports are not volumes this driver made, and listing them would name other users' exports.</summary>
    public Task<IReadOnlyList<VolumeInfo>> ListVolumesAsync(CancellationToken cancellationToken = default) =>
        Task.FromResult<IReadOnlyList<VolumeInfo>>([]);

    public Task<long> ExpandVolumeAsync(string volumeId, long newSizeBytes, CancellationToken cancellationToken = default) =>
        throw new StoreException(StoreErrorCode.InvalidArgument,
            $"cannot expand volume '{volumeId}': the nbd store does not resize exports; grow the export on the server, then restage the volume");

    public Task<SnapshotInfo> CreateSnapshotAsync(string sourceVolumeId, string name, CancellationToken cancellationToken = default) =>
        throw NoSnapshots();

    public Task<bool> DeleteSnapshotAsync(string snapshotId, CancellationToken cancellationToken = default) =>
        throw NoSnapshots();

    public Task<SnapshotInfo> GetSnapshotAsync(string snapshotId, CancellationToken cancellationToken = default) =>
        throw NoSnapshots();

    public Task<IReadOnlyList<SnapshotInfo>> ListSnapshotsAsync(string? sourceVolumeId = null, CancellationToken cancellationToken = default) =>
        Task.FromResult<IReadOnlyList<SnapshotInfo>>([]);

    /// <summary>Nothing to provision: no space for new volumes.</summary>
    public Task<StoreCapacity> GetCapacityAsync(CancellationToken cancellationToken = default) =>
        Task.FromResult(new StoreCapacity(0, StoreLimits.MaximumVolumeSizeBytes, StoreLimits.SizeGranularity));

    public async Task<IBlockBackend> OpenVolumeAsync(string volumeId, VolumeAccess access = VolumeAccess.ReadWrite, CancellationToken cancellationToken = default)
    {
        var readOnly = access == VolumeAccess.ReadOnly;
        var client = await ConnectAsync(volumeId, readOnly, cancellationToken).ConfigureAwait(false);
        return new NbdVolume(volumeId, client, readOnly);
    }

    public ValueTask DisposeAsync() => default;

    /// <summary>The export a volume ID stands for: the store's <c>export</c> when set, else the ID itself.</summary>
    public string ExportFor(string volumeId) => Options.Export ?? NbdStoreProvider.CheckExportName(volumeId, "volumeId");

    private Task<NbdClient> ConnectAsync(string volumeId, bool readOnly, CancellationToken cancellationToken) =>
        NbdClient.ConnectAsync(new NbdClientOptions(Options.Endpoint, ExportFor(volumeId), Options.Connections, readOnly) { Tls = Options.Tls }, logger, cancellationToken);

    private static StoreException NoSnapshots() =>
        new(StoreErrorCode.InvalidArgument, "the nbd store offers no snapshots or clones: NBD has no such operations; take them on the server (e.g. qemu-img snapshot on a qcow2 image)");
}
