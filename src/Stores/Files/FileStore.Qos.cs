using UblkCsi.Engine.Backends.Qos;
using UblkCsi.Stores.Internal;

namespace UblkCsi.Stores.Files;

/// <summary>QoS records as <c>qos/ID.json</c> (the limits as their StorageClass parameters), written atomically.</summary>
public sealed partial class FileStore
{
    public async Task<QosLimits> GetQosAsync(string volumeId, CancellationToken cancellationToken = default)
    {
        VolumeIds.Validate(volumeId);
        using var held = await _locks.AcquireAsync(volumeId, cancellationToken).ConfigureAwait(false);
        _ = ReadVolumeRecord(volumeId) ?? throw new StoreNotFoundException(StoreObjectKind.Volume, volumeId);
        return AtomicFile.ReadJson<Dictionary<string, string>>(QosRecord(volumeId)) is { } parameters
            ? QosLimits.Parse(parameters)
            : QosLimits.Unlimited;
    }

    public async Task SetQosAsync(string volumeId, QosLimits limits, CancellationToken cancellationToken = default)
    {
        VolumeIds.Validate(volumeId);
        ArgumentNullException.ThrowIfNull(limits);
        using var held = await _locks.AcquireAsync(volumeId, cancellationToken).ConfigureAwait(false);
        _ = ReadVolumeRecord(volumeId) ?? throw new StoreNotFoundException(StoreObjectKind.Volume, volumeId);
        if (limits.IsUnlimited)
        {
            File.Delete(QosRecord(volumeId));
            LinuxFile.SyncDirectory(_qos);
        }
        else
        {
            AtomicFile.WriteJson(QosRecord(volumeId), limits.ToParameters());
        }
    }

    private string QosRecord(string id) => Path.Combine(_qos, id + ".json");
}
