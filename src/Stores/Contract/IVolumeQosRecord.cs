using UblkCsi.Engine.Backends.Qos;

namespace UblkCsi.Stores;

/// <summary>
/// A volume's QoS limits as the store records them: the source of truth a node plugin serving the
/// volume polls, so ControllerModifyVolume (a Kubernetes VolumeAttributesClass change) reaches the
/// data path without a re-stage. Kept apart from the data-path metadata, like the publication
/// record, and deleted with the volume.
/// </summary>
public interface IVolumeQosRecord
{
    /// <summary>The recorded limits; <see cref="QosLimits.Unlimited"/> when none are recorded.</summary>
    /// <exception cref="StoreNotFoundException">No such volume.</exception>
    Task<QosLimits> GetQosAsync(string volumeId, CancellationToken cancellationToken = default);

    /// <summary>Replaces the record (unlimited removes it).</summary>
    /// <exception cref="StoreNotFoundException">No such volume.</exception>
    Task SetQosAsync(string volumeId, QosLimits limits, CancellationToken cancellationToken = default);
}
