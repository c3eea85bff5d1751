using UblkCsi.Engine.Backends.Qos;

namespace UblkCsi.Stores.InMemory;

/// <summary>QoS records in process memory, gone with the volume.</summary>
public sealed partial class MemoryStore
{
    public Task<QosLimits> GetQosAsync(string volumeId, CancellationToken cancellationToken = default)
    {
        VolumeIds.Validate(volumeId);
        lock (_gate)
        {
            _ = GetVolume(volumeId);
            return Task.FromResult(_qos.GetValueOrDefault(volumeId) ?? QosLimits.Unlimited);
        }
    }

    public Task SetQosAsync(string volumeId, QosLimits limits, CancellationToken cancellationToken = default)
    {
        VolumeIds.Validate(volumeId);
        ArgumentNullException.ThrowIfNull(limits);
        lock (_gate)
        {
            _ = GetVolume(volumeId);
            if (limits.IsUnlimited)
            {
                _qos.Remove(volumeId);
            }
            else
            {
                _qos[volumeId] = limits;
            }
        }

        return Task.CompletedTask;
    }
}
