using Csi.V1;
using Grpc.Core;
using UblkCsi.Controller.Provisioning;
using UblkCsi.Stores;

namespace UblkCsi.Controller;

public sealed partial class ControllerService
{
    public override async Task<CreateSnapshotResponse> CreateSnapshot(CreateSnapshotRequest request, ServerCallContext context)
    {
        Require(request.Name, "name");
        Require(request.SourceVolumeId, "source_volume_id");
        var unknown = StorageClassParameters.WithoutSidecarKeys(Map(request.Parameters));
        if (unknown.Count > 0)
        {
            throw CsiErrors.InvalidArgument($"parameter '{unknown.Keys.Order(StringComparer.Ordinal).First()}': unknown snapshot parameter; allowed: none");
        }

        var storeId = Parse(() => VolumeIds.FromName(request.Name));
        var (source, locator) = Resolve(request.SourceVolumeId) ?? throw CsiErrors.NotFound($"source volume '{request.SourceVolumeId}' does not exist");
        var snapshotId = Join(locator, storeId, "snapshot_id");

        using var held = _locks.Acquire("snapshot/" + storeId);
        var store = OpenLocation(locator, Map(request.Secrets));
        var info = await Store(() => store.CreateSnapshotAsync(source.StoreId, request.Name, context.CancellationToken)).ConfigureAwait(false);
        ControllerLog.SnapshotCreated(_logger, snapshotId, request.SourceVolumeId);
        return new CreateSnapshotResponse { Snapshot = ToCsiSnapshot(locator, info) };
    }

    public override async Task<DeleteSnapshotResponse> DeleteSnapshot(DeleteSnapshotRequest request, ServerCallContext context)
    {
        Require(request.SnapshotId, "snapshot_id");
        if (Resolve(request.SnapshotId) is not var (handle, locator))
        {
            return new DeleteSnapshotResponse(); // not an ID this driver issued: nothing to delete
        }

        using var held = _locks.Acquire("snapshot/" + handle.StoreId);
        var store = OpenLocation(locator, Map(request.Secrets));
        var existed = await Store(() => store.DeleteSnapshotAsync(handle.StoreId, context.CancellationToken)).ConfigureAwait(false);
        ControllerLog.SnapshotDeleted(_logger, request.SnapshotId, existed);
        return new DeleteSnapshotResponse();
    }

    public override async Task<ListSnapshotsResponse> ListSnapshots(ListSnapshotsRequest request, ServerCallContext context)
    {
        var snapshots = new List<Snapshot>();
        if (request.SnapshotId.Length > 0)
        {
            if (ResolveForFilter(request.SnapshotId) is var (handle, locator))
            {
                var store = OpenLocation(locator, Map(request.Secrets));
                var info = await Store(() => FindSnapshotAsync(store, handle.StoreId, context.CancellationToken)).ConfigureAwait(false);
                if (info is not null && (request.SourceVolumeId.Length == 0 || ToCsiSnapshot(locator, info).SourceVolumeId == request.SourceVolumeId))
                {
                    snapshots.Add(ToCsiSnapshot(locator, info));
                }
            }
        }
        else if (request.SourceVolumeId.Length > 0)
        {
            if (ResolveForFilter(request.SourceVolumeId) is var (handle, locator))
            {
                var store = OpenLocation(locator, Map(request.Secrets));
                var list = await Store(() => store.ListSnapshotsAsync(handle.StoreId, context.CancellationToken)).ConfigureAwait(false);
                snapshots.AddRange(list.Select(s => ToCsiSnapshot(locator, s)));
            }
        }
        else
        {
            foreach (var locator in ServedLocations())
            {
                var store = OpenLocation(locator, Map(request.Secrets));
                var list = await Store(() => store.ListSnapshotsAsync(null, context.CancellationToken)).ConfigureAwait(false);
                snapshots.AddRange(list.Select(s => ToCsiSnapshot(locator, s)));
            }
        }

        snapshots.Sort((a, b) => string.CompareOrdinal(a.SnapshotId, b.SnapshotId));
        var (page, next) = PageToken.Slice(snapshots, s => s.SnapshotId, request.MaxEntries, request.StartingToken);
        return new ListSnapshotsResponse
        {
            Entries = { page.Select(s => new ListSnapshotsResponse.Types.Entry { Snapshot = s }) },
            NextToken = next,
        };
    }

    /// <summary>A filter naming something that is not ours matches nothing (no error, per the spec).</summary>
    private (VolumeHandle Handle, StoreLocator Locator)? ResolveForFilter(string id)
    {
        try
        {
            return Resolve(id);
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.FailedPrecondition)
        {
            return null;
        }
    }

    private static Snapshot ToCsiSnapshot(StoreLocator locator, SnapshotInfo info) => new()
    {
        SnapshotId = new VolumeHandle(locator.ToString(), info.Id).ToString(),
        SourceVolumeId = new VolumeHandle(locator.ToString(), info.SourceVolumeId).ToString(),
        SizeBytes = info.SizeBytes,
        CreationTime = Time(info.CreatedUtc),
        ReadyToUse = info.ReadyToUse,
    };

    private static async Task<SnapshotInfo?> FindSnapshotAsync(IVolumeStore store, string storeId, CancellationToken cancellationToken)
    {
        try
        {
            return await store.GetSnapshotAsync(storeId, cancellationToken).ConfigureAwait(false);
        }
        catch (StoreNotFoundException)
        {
            return null;
        }
    }
}
