using UblkCsi.BlockStore.V1;
using UblkCsi.Engine.Backends.Qos;

namespace UblkCsi.Stores.Rpc;

/// <summary>
/// The controller's records of an rpc volume (publications, QoS limits), kept by the block-store
/// server with the volume's metadata and read and written over the protocol's record rpcs.
/// </summary>
public sealed partial class RpcStore : IVolumePublications, IVolumeQosRecord
{
    public async Task<IReadOnlyList<VolumePublication>> GetPublicationsAsync(string volumeId, CancellationToken cancellationToken = default)
    {
        VolumeIds.Validate(volumeId);
        var response = await CallAsync<GetPublicationsRequest, GetPublicationsResponse>(static (c, r, o) => c.GetPublicationsAsync(r, o), new GetPublicationsRequest { VolumeId = volumeId }, cancellationToken).ConfigureAwait(false);
        return [.. response.Publications.Select(ProtoConvert.FromProto)];
    }

    public async Task SetPublicationsAsync(string volumeId, IReadOnlyList<VolumePublication> publications, CancellationToken cancellationToken = default)
    {
        VolumeIds.Validate(volumeId);
        ArgumentNullException.ThrowIfNull(publications);
        var request = new SetPublicationsRequest { VolumeId = volumeId };
        request.Publications.AddRange(publications.Select(ProtoConvert.ToProto));
        await CallAsync<SetPublicationsRequest, SetPublicationsResponse>(static (c, r, o) => c.SetPublicationsAsync(r, o), request, cancellationToken).ConfigureAwait(false);
    }

    public async Task<QosLimits> GetQosAsync(string volumeId, CancellationToken cancellationToken = default)
    {
        VolumeIds.Validate(volumeId);
        var response = await CallAsync<GetQosRequest, GetQosResponse>(static (c, r, o) => c.GetQosAsync(r, o), new GetQosRequest { VolumeId = volumeId }, cancellationToken).ConfigureAwait(false);
        return ProtoConvert.FromProto(response.Parameters);
    }

    public async Task SetQosAsync(string volumeId, QosLimits limits, CancellationToken cancellationToken = default)
    {
        VolumeIds.Validate(volumeId);
        ArgumentNullException.ThrowIfNull(limits);
        var request = new SetQosRequest { VolumeId = volumeId };
        foreach (var (key, value) in limits.ToParameters())
        {
            request.Parameters[key] = value;
        }

        await CallAsync<SetQosRequest, SetQosResponse>(static (c, r, o) => c.SetQosAsync(r, o), request, cancellationToken).ConfigureAwait(false);
    }
}
