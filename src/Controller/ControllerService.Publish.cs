using Csi.V1;
using Grpc.Core;
using UblkCsi.Controller.Provisioning;
using UblkCsi.Stores;

namespace UblkCsi.Controller;

public sealed partial class ControllerService
{
    /// <summary>The longest node ID accepted (CSI's limit for node_id).</summary>
    public const int MaxNodeIdBytes = 256;

    public override async Task<ControllerPublishVolumeResponse> ControllerPublishVolume(ControllerPublishVolumeRequest request, ServerCallContext context)
    {
        RequirePublishing();
        Require(request.VolumeId, "volume_id");
        Require(request.NodeId, "node_id");
        ValidateNodeId(request.NodeId);
        CapabilityRules.ValidateForm(request.VolumeCapability, "volume_capability");
        if (CapabilityRules.Unsupported(request.VolumeCapability) is { } unsupported)
        {
            throw CsiErrors.InvalidArgument($"volume_capability: {unsupported}");
        }

        var (handle, locator) = Resolve(request.VolumeId) ?? throw CsiErrors.NotFound($"volume '{request.VolumeId}' does not exist");
        if (_options.KnownNodes is { } known && !known.Contains(request.NodeId))
        {
            throw CsiErrors.NotFound($"node '{request.NodeId}' is not known to this controller");
        }

        using var held = _locks.Acquire("volume/" + handle.StoreId);
        var records = PublicationRecords(OpenLocation(locator, Map(request.Secrets)), locator);
        var readOnly = request.Readonly || CapabilityRules.IsReadOnlyMode(request.VolumeCapability.AccessMode.Mode);
        await Store(async () =>
        {
            var published = await records.GetPublicationsAsync(handle.StoreId, context.CancellationToken).ConfigureAwait(false);
            if (published.FirstOrDefault(p => p.NodeId == request.NodeId) is { } same)
            {
                return same.ReadOnly == readOnly
                    ? true
                    : throw CsiErrors.AlreadyExists($"volume '{request.VolumeId}' is already published to node '{request.NodeId}' with read-only={same.ReadOnly}");
            }

            if (published.Count > 0)
            {
                // Every supported mode is single-node: a volume has one writer node, and the stores
                // do not arbitrate between two.
                var others = string.Join(", ", published.Select(p => p.NodeId));
                ControllerLog.PublishRefused(_logger, request.VolumeId, request.NodeId, others);
                throw CsiErrors.FailedPrecondition($"volume '{request.VolumeId}' is published to node {others}; a volume is published to one node at a time");
            }

            await records.SetPublicationsAsync(handle.StoreId, [new VolumePublication(request.NodeId, readOnly)], context.CancellationToken).ConfigureAwait(false);
            ControllerLog.VolumePublished(_logger, request.VolumeId, request.NodeId, readOnly);
            return true;
        }).ConfigureAwait(false);
        return new ControllerPublishVolumeResponse();
    }

    public override async Task<ControllerUnpublishVolumeResponse> ControllerUnpublishVolume(ControllerUnpublishVolumeRequest request, ServerCallContext context)
    {
        RequirePublishing();
        Require(request.VolumeId, "volume_id");
        if (request.NodeId.Length > 0)
        {
            ValidateNodeId(request.NodeId);
        }

        if (Resolve(request.VolumeId) is not var (handle, locator))
        {
            return new ControllerUnpublishVolumeResponse(); // unknown volume: unpublished from every node
        }

        using var held = _locks.Acquire("volume/" + handle.StoreId);
        var records = PublicationRecords(OpenLocation(locator, Map(request.Secrets)), locator);
        await Store(async () =>
        {
            IReadOnlyList<VolumePublication> published;
            try
            {
                published = await records.GetPublicationsAsync(handle.StoreId, context.CancellationToken).ConfigureAwait(false);
            }
            catch (StoreNotFoundException)
            {
                return false;
            }

            // No node ID means every node (CSI); the volume may already be gone from this one.
            var remaining = published.Where(p => request.NodeId.Length > 0 && p.NodeId != request.NodeId).ToList();
            if (remaining.Count != published.Count)
            {
                await records.SetPublicationsAsync(handle.StoreId, remaining, context.CancellationToken).ConfigureAwait(false);
                ControllerLog.VolumeUnpublished(_logger, request.VolumeId, request.NodeId.Length > 0 ? request.NodeId : "every node");
            }

            return true;
        }).ConfigureAwait(false);
        return new ControllerUnpublishVolumeResponse();
    }

    private void RequirePublishing()
    {
        if (IsNodeLocal)
        {
            throw CsiErrors.Unimplemented("node-local volumes need no attach; this node plugin's controller does not publish");
        }
    }

    private static IVolumePublications PublicationRecords(IVolumeStore store, StoreLocator locator) =>
        store as IVolumePublications
        ?? throw CsiErrors.FailedPrecondition($"store {locator} keeps no publication records, so it cannot enforce a single writer");

    private static void ValidateNodeId(string nodeId)
    {
        if (System.Text.Encoding.UTF8.GetByteCount(nodeId) > MaxNodeIdBytes || nodeId.Any(char.IsControl))
        {
            throw CsiErrors.InvalidArgument($"node_id must be at most {MaxNodeIdBytes} bytes without control characters");
        }
    }
}
