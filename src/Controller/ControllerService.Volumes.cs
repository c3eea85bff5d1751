using Csi.V1;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using UblkCsi.Controller.Provisioning;
using UblkCsi.Stores;
using CreateRequest = UblkCsi.Stores.CreateVolumeRequest;

namespace UblkCsi.Controller;

public sealed partial class ControllerService
{
    public override async Task<CreateVolumeResponse> CreateVolume(Csi.V1.CreateVolumeRequest request, ServerCallContext context)
    {
        Require(request.Name, "name");
        CapabilityRules.ValidateForm(request.VolumeCapabilities, "volume_capabilities");
        if (CapabilityRules.Unsupported(request.VolumeCapabilities) is { } unsupported)
        {
            throw CsiErrors.InvalidArgument($"volume_capabilities: {unsupported}");
        }

        _ = CapacityRules.ChooseSize(request.CapacityRange, sourceSize: null);
        var parameters = Parse(() => StorageClassParameters.Parse(Map(request.Parameters), _options.EffectiveStoreTypes));
        if (request.MutableParameters.Count > 0)
        {
            // A VolumeAttributesClass named at creation: its limits win over the StorageClass's, key by key.
            var merged = new Dictionary<string, string>(parameters.Qos.IsUnlimited ? [] : parameters.Qos.ToParameters(), StringComparer.Ordinal);
            foreach (var (key, value) in request.MutableParameters)
            {
                merged[key] = value;
            }

            parameters = parameters with { Qos = Parse(() => StorageClassParameters.ParseMutable(merged)) };
        }

        var storeId = Parse(() => VolumeIds.FromName(request.Name));
        var locator = StoreLocator.From(parameters.StoreType, parameters.StoreParameters, _options.NodeLocalNodeId);
        var volumeId = Join(locator, storeId, "volume_id");
        var source = ResolveContentSource(request.VolumeContentSource, locator);
        CheckAccessibility(request.AccessibilityRequirements);

        using var held = _locks.Acquire("volume/" + storeId);
        var store = Parse(() => _catalog.Open(locator, parameters.StoreParameters, Map(request.Secrets)));
        var info = await Store(async () =>
        {
            var existing = await FindVolumeAsync(store, storeId, context.CancellationToken).ConfigureAwait(false);
            if (existing is not null)
            {
                if (existing.Name != request.Name || existing.Source != source || !CapacityRules.Satisfies(request.CapacityRange, existing.SizeBytes))
                {
                    throw CsiErrors.AlreadyExists(
                        $"volume '{request.Name}' already exists with {existing.SizeBytes} bytes and {Describe(existing.Source)}, incompatible with this request");
                }

                return existing;
            }

            long? sourceSize = source is null ? null : await SourceSizeAsync(store, source, context.CancellationToken).ConfigureAwait(false);
            var size = CapacityRules.ChooseSize(request.CapacityRange, sourceSize);
            var created = await store.CreateVolumeAsync(new CreateRequest(request.Name, size, source), context.CancellationToken).ConfigureAwait(false);
            if (!parameters.Qos.IsUnlimited && store is IVolumeQosRecord qosRecord)
            {
                // The record, not the volume context, is what a later ControllerModifyVolume changes and nodes poll.
                await qosRecord.SetQosAsync(created.Id, parameters.Qos, context.CancellationToken).ConfigureAwait(false);
            }

            ControllerLog.VolumeCreated(_logger, volumeId, created.SizeBytes, request.Name);
            return created;
        }).ConfigureAwait(false);

        var volume = new Volume
        {
            VolumeId = volumeId,
            CapacityBytes = info.SizeBytes,
            VolumeContext = { parameters.ToVolumeContext() },
            ContentSource = request.VolumeContentSource,
        };
        if (IsNodeLocal)
        {
            volume.AccessibleTopology.Add(NodeSegment());
        }

        return new CreateVolumeResponse { Volume = volume };
    }

    public override async Task<DeleteVolumeResponse> DeleteVolume(DeleteVolumeRequest request, ServerCallContext context)
    {
        Require(request.VolumeId, "volume_id");
        if (Resolve(request.VolumeId) is not var (handle, locator))
        {
            return new DeleteVolumeResponse(); // not an ID this driver issued: nothing to delete
        }

        using var held = _locks.Acquire("volume/" + handle.StoreId);
        var store = OpenLocation(locator, Map(request.Secrets));
        await Store(async () =>
        {
            if (store is IVolumePublications records && await FindVolumeAsync(store, handle.StoreId, context.CancellationToken).ConfigureAwait(false) is not null)
            {
                var published = await records.GetPublicationsAsync(handle.StoreId, context.CancellationToken).ConfigureAwait(false);
                if (published.Count > 0)
                {
                    throw CsiErrors.FailedPrecondition($"volume '{request.VolumeId}' is still published to {string.Join(", ", published.Select(p => p.NodeId))}");
                }
            }

            var existed = await store.DeleteVolumeAsync(handle.StoreId, context.CancellationToken).ConfigureAwait(false);
            ControllerLog.VolumeDeleted(_logger, request.VolumeId, existed);
            return existed;
        }).ConfigureAwait(false);
        return new DeleteVolumeResponse();
    }

    public override async Task<ValidateVolumeCapabilitiesResponse> ValidateVolumeCapabilities(ValidateVolumeCapabilitiesRequest request, ServerCallContext context)
    {
        Require(request.VolumeId, "volume_id");
        CapabilityRules.ValidateForm(request.VolumeCapabilities, "volume_capabilities");
        var (handle, locator) = Resolve(request.VolumeId) ?? throw CsiErrors.NotFound($"volume '{request.VolumeId}' does not exist");
        var store = OpenLocation(locator, Map(request.Secrets));
        await Store(() => store.GetVolumeAsync(handle.StoreId, context.CancellationToken)).ConfigureAwait(false);

        if (CapabilityRules.Unsupported(request.VolumeCapabilities) is { } unsupported)
        {
            return new ValidateVolumeCapabilitiesResponse { Message = unsupported };
        }

        return new ValidateVolumeCapabilitiesResponse
        {
            Confirmed = new ValidateVolumeCapabilitiesResponse.Types.Confirmed
            {
                VolumeCapabilities = { request.VolumeCapabilities },
                VolumeContext = { request.VolumeContext },
                Parameters = { request.Parameters },
                MutableParameters = { request.MutableParameters },
            },
        };
    }

    public override async Task<ControllerExpandVolumeResponse> ControllerExpandVolume(ControllerExpandVolumeRequest request, ServerCallContext context)
    {
        Require(request.VolumeId, "volume_id");
        var size = CapacityRules.ChooseExpandSize(request.CapacityRange);
        if (request.VolumeCapability is not null)
        {
            CapabilityRules.ValidateForm(request.VolumeCapability, "volume_capability");
        }

        var (handle, locator) = Resolve(request.VolumeId) ?? throw CsiErrors.NotFound($"volume '{request.VolumeId}' does not exist");
        using var held = _locks.Acquire("volume/" + handle.StoreId);
        var store = OpenLocation(locator, Map(request.Secrets));
        var grown = await Store(() => store.ExpandVolumeAsync(handle.StoreId, size, context.CancellationToken)).ConfigureAwait(false);
        ControllerLog.VolumeExpanded(_logger, request.VolumeId, grown);

        // Always true, raw block included: the node plugin must grow its ublk device before the new
        // size is visible, and for a mount also the filesystem.
        return new ControllerExpandVolumeResponse { CapacityBytes = grown, NodeExpansionRequired = true };
    }

    public override async Task<ListVolumesResponse> ListVolumes(ListVolumesRequest request, ServerCallContext context)
    {
        var entries = new List<ListVolumesResponse.Types.Entry>();
        foreach (var locator in ServedLocations())
        {
            var store = OpenLocation(locator, new Dictionary<string, string>());
            var volumes = await Store(() => store.ListVolumesAsync(context.CancellationToken)).ConfigureAwait(false);
            foreach (var info in volumes)
            {
                var entry = new ListVolumesResponse.Types.Entry
                {
                    Volume = ToCsiVolume(locator, info),
                    Status = new ListVolumesResponse.Types.VolumeStatus(),
                };
                if (!IsNodeLocal && store is IVolumePublications records)
                {
                    var published = await Store(() => records.GetPublicationsAsync(info.Id, context.CancellationToken)).ConfigureAwait(false);
                    entry.Status.PublishedNodeIds.AddRange(published.Select(p => p.NodeId));
                }

                entries.Add(entry);
            }
        }

        entries.Sort((a, b) => string.CompareOrdinal(a.Volume.VolumeId, b.Volume.VolumeId));
        var (page, next) = PageToken.Slice(entries, e => e.Volume.VolumeId, request.MaxEntries, request.StartingToken);
        return new ListVolumesResponse { Entries = { page }, NextToken = next };
    }

    public override async Task<ControllerGetVolumeResponse> ControllerGetVolume(ControllerGetVolumeRequest request, ServerCallContext context)
    {
        Require(request.VolumeId, "volume_id");
        var (handle, locator) = Resolve(request.VolumeId) ?? throw CsiErrors.NotFound($"volume '{request.VolumeId}' does not exist");
        var status = new ControllerGetVolumeResponse.Types.VolumeStatus { VolumeCondition = new Csi.V1.VolumeCondition { Message = "volume is reachable in its store" } };
        VolumeInfo? info = null;
        try
        {
            var store = _catalog.OpenLocation(locator, new Dictionary<string, string>());
            info = await store.GetVolumeAsync(handle.StoreId, context.CancellationToken).ConfigureAwait(false);
            if (!IsNodeLocal && store is IVolumePublications records)
            {
                var published = await records.GetPublicationsAsync(handle.StoreId, context.CancellationToken).ConfigureAwait(false);
                status.PublishedNodeIds.AddRange(published.Select(p => p.NodeId));
            }
        }
        catch (StoreException e) when (e.Code == StoreErrorCode.NotFound)
        {
            throw CsiErrors.FromStore(e);
        }
        catch (StoreException e)
        {
            // The volume exists as far as we know, but its store cannot answer: that is the abnormal
            // condition the health monitor should report, not an error of this call.
            status.VolumeCondition.Abnormal = true;
            status.VolumeCondition.Message = $"the store cannot reach the volume: {e.Message}";
            ControllerLog.VolumeAbnormal(_logger, request.VolumeId, e.Message);
        }

        var volume = info is null ? new Volume { VolumeId = request.VolumeId } : ToCsiVolume(locator, info);
        return new ControllerGetVolumeResponse { Volume = volume, Status = status };
    }

    public override async Task<GetCapacityResponse> GetCapacity(GetCapacityRequest request, ServerCallContext context)
    {
        var noCapacity = new GetCapacityResponse { AvailableCapacity = 0 };
        if (request.Parameters.Count == 0)
        {
            return noCapacity; // capacity belongs to a store, and no store was named
        }

        foreach (var capability in request.VolumeCapabilities)
        {
            CapabilityRules.ValidateForm(capability, "volume_capabilities");
        }

        var parameters = Parse(() => StorageClassParameters.Parse(Map(request.Parameters), _options.EffectiveStoreTypes));
        if (CapabilityRules.Unsupported(request.VolumeCapabilities) is not null || !InThisSegment(request.AccessibleTopology))
        {
            return noCapacity;
        }

        var locator = StoreLocator.From(parameters.StoreType, parameters.StoreParameters, _options.NodeLocalNodeId);
        var store = Parse(() => _catalog.Open(locator, parameters.StoreParameters, new Dictionary<string, string>()));
        var capacity = await Store(() => store.GetCapacityAsync(context.CancellationToken)).ConfigureAwait(false);

        // Stores that cannot tell (object stores) are effectively unbounded; a thin store can hold a
        // volume as large as its free space, which is what keeps the scheduler off full nodes.
        var available = capacity.AvailableBytes ?? capacity.MaximumVolumeSizeBytes;
        return new GetCapacityResponse
        {
            AvailableCapacity = available,
            MaximumVolumeSize = Math.Min(available, capacity.MaximumVolumeSizeBytes),
            MinimumVolumeSize = capacity.MinimumVolumeSizeBytes,
        };
    }

    private IEnumerable<StoreLocator> ServedLocations() =>
        _catalog.KnownLocations().Where(l => l.NodeKey == _nodeKey && _options.EffectiveStoreTypes.Contains(l.Type));

    private Volume ToCsiVolume(StoreLocator locator, VolumeInfo info)
    {
        var volume = new Volume
        {
            VolumeId = new VolumeHandle(locator.ToString(), info.Id).ToString(),
            CapacityBytes = info.SizeBytes,
        };
        if (info.Source is { } source)
        {
            var sourceId = new VolumeHandle(locator.ToString(), source.Id).ToString();
            volume.ContentSource = source.Kind == VolumeSourceKind.Snapshot
                ? new VolumeContentSource { Snapshot = new VolumeContentSource.Types.SnapshotSource { SnapshotId = sourceId } }
                : new VolumeContentSource { Volume = new VolumeContentSource.Types.VolumeSource { VolumeId = sourceId } };
        }

        if (IsNodeLocal)
        {
            volume.AccessibleTopology.Add(NodeSegment());
        }

        return volume;
    }

    private Topology NodeSegment() => new() { Segments = { [_options.NodeTopologyKey] = _options.NodeLocalNodeId! } };

    /// <summary>A node-local controller can only place volumes on its node; a requirement must allow it.</summary>
    private void CheckAccessibility(TopologyRequirement? requirement)
    {
        if (!IsNodeLocal || requirement is null || requirement.Requisite.Count == 0 && requirement.Preferred.Count == 0)
        {
            return;
        }

        if (!requirement.Requisite.Concat(requirement.Preferred).Any(t => InThisSegment(t)))
        {
            throw CsiErrors.ResourceExhausted(
                $"this node-local controller can only place volumes on node '{_options.NodeLocalNodeId}' ({_options.NodeTopologyKey}), which the accessibility requirements exclude");
        }
    }

    private bool InThisSegment(Topology? topology) =>
        !IsNodeLocal || topology is null || !topology.Segments.TryGetValue(_options.NodeTopologyKey, out var node) || node == _options.NodeLocalNodeId;

    private VolumeSource? ResolveContentSource(VolumeContentSource? source, StoreLocator target)
    {
        if (source is null || source.TypeCase == VolumeContentSource.TypeOneofCase.None)
        {
            return null;
        }

        var (id, kind, field) = source.TypeCase == VolumeContentSource.TypeOneofCase.Snapshot
            ? (source.Snapshot.SnapshotId, VolumeSourceKind.Snapshot, "volume_content_source.snapshot.snapshot_id")
            : (source.Volume.VolumeId, VolumeSourceKind.Volume, "volume_content_source.volume.volume_id");
        Require(id, field);
        var what = kind == VolumeSourceKind.Snapshot ? "snapshot" : "volume";
        var (handle, locator) = Resolve(id) ?? throw CsiErrors.NotFound($"source {what} '{id}' does not exist");
        if (locator.ToString() != target.ToString())
        {
            throw CsiErrors.InvalidArgument($"{field}: the source {what} lives in store {locator}, the new volume in {target}; restores and clones stay within one store");
        }

        return new VolumeSource(kind, handle.StoreId);
    }

    private static async Task<long> SourceSizeAsync(IVolumeStore store, VolumeSource source, CancellationToken cancellationToken) =>
        source.Kind == VolumeSourceKind.Snapshot
            ? (await store.GetSnapshotAsync(source.Id, cancellationToken).ConfigureAwait(false)).SizeBytes
            : (await store.GetVolumeAsync(source.Id, cancellationToken).ConfigureAwait(false)).SizeBytes;

    private static async Task<VolumeInfo?> FindVolumeAsync(IVolumeStore store, string storeId, CancellationToken cancellationToken)
    {
        try
        {
            return await store.GetVolumeAsync(storeId, cancellationToken).ConfigureAwait(false);
        }
        catch (StoreNotFoundException)
        {
            return null;
        }
    }

    private static string Describe(VolumeSource? source) =>
        source is null ? "no content source" : $"content source {source.Kind.ToString().ToLowerInvariant()} '{source.Id}'";

    /// <summary>Parameter checks that throw store exceptions, as INVALID_ARGUMENT naming the parameter.</summary>
    private static T Parse<T>(Func<T> parse)
    {
        try
        {
            return parse();
        }
        catch (StoreException e)
        {
            throw CsiErrors.FromStore(e);
        }
    }

    private static Timestamp Time(DateTimeOffset when) => Timestamp.FromDateTimeOffset(when);
}
