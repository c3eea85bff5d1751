using Csi.V1;
using Grpc.Core;
using UblkCsi.Controller.Provisioning;
using UblkCsi.Stores;

namespace UblkCsi.Controller;

/// <summary>
/// ControllerModifyVolume: a Kubernetes VolumeAttributesClass change. Only the QoS limits are
/// mutable; they are written to the volume's QoS record in its store, which every node plugin
/// serving the volume polls, so the new limits reach the data path without a re-stage or remount.
/// The class's parameters replace the previous set whole (a key left out is no longer limited); an
/// empty set changes nothing.
/// </summary>
public sealed partial class ControllerService
{
    public override async Task<ControllerModifyVolumeResponse> ControllerModifyVolume(ControllerModifyVolumeRequest request, ServerCallContext context)
    {
        Require(request.VolumeId, "volume_id");
        var limits = Parse(() => StorageClassParameters.ParseMutable(Map(request.MutableParameters)));
        var (handle, locator) = Resolve(request.VolumeId) ?? throw CsiErrors.NotFound($"volume '{request.VolumeId}' does not exist");

        using var held = _locks.Acquire("volume/" + handle.StoreId);
        var store = OpenLocation(locator, Map(request.Secrets));
        _ = await Store(() => store.GetVolumeAsync(handle.StoreId, context.CancellationToken)).ConfigureAwait(false);
        if (request.MutableParameters.Count == 0)
        {
            return new ControllerModifyVolumeResponse(); // nothing asked to change (csi-sanity sends this)
        }

        if (store is not IVolumeQosRecord records)
        {
            throw CsiErrors.InvalidArgument(
                $"mutable_parameters: volumes of store {locator.Type} keep no QoS record, so their limits cannot change after creation; recreate the volume with the new limits");
        }

        await Store(async () =>
        {
            await records.SetQosAsync(handle.StoreId, limits, context.CancellationToken).ConfigureAwait(false);
            return true;
        }).ConfigureAwait(false);
        ControllerLog.VolumeModified(_logger, request.VolumeId, string.Join(", ", limits.ToParameters().Select(p => $"{p.Key}={p.Value}")));
        return new ControllerModifyVolumeResponse();
    }
}
