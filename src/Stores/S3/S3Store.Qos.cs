using System.Text.Json;
using UblkCsi.Engine.Backends.Qos;

namespace UblkCsi.Stores.S3;

/// <summary>
/// QoS records as <c>qos/ID.json</c>, an object of their own (the limits as StorageClass parameters):
/// the controller writes it, node plugins serving the volume poll it; the writer's manifest is never touched.
/// </summary>
public sealed partial class S3Store : IVolumeQosRecord
{
    public async Task<QosLimits> GetQosAsync(string volumeId, CancellationToken cancellationToken = default)
    {
        await RequireVolumeAsync(volumeId, cancellationToken).ConfigureAwait(false);
        var bytes = await Bucket.GetAsync(S3Keys.Qos(volumeId), cancellationToken).ConfigureAwait(false);
        return bytes is null
            ? QosLimits.Unlimited
            : QosLimits.Parse(JsonSerializer.Deserialize<Dictionary<string, string>>(bytes) ?? []);
    }

    public async Task SetQosAsync(string volumeId, QosLimits limits, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(limits);
        await RequireVolumeAsync(volumeId, cancellationToken).ConfigureAwait(false);
        if (limits.IsUnlimited)
        {
            await Bucket.DeleteAsync([S3Keys.Qos(volumeId)], cancellationToken).ConfigureAwait(false);
            return;
        }

        await Bucket.PutAsync(S3Keys.Qos(volumeId), JsonSerializer.SerializeToUtf8Bytes(limits.ToParameters()), cancellationToken).ConfigureAwait(false);
    }
}
