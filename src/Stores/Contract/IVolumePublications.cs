namespace UblkCsi.Stores;

/// <summary>One node a volume is published to (CSI ControllerPublishVolume), as the store records it.</summary>
/// <param name="NodeId">The CSI node ID.</param>
/// <param name="ReadOnly">Published read-only.</param>
public sealed record VolumePublication(string NodeId, bool ReadOnly);

/// <summary>
/// The attachment record of a volume, kept in the store next to the volume's own metadata so a
/// stateless controller can enforce single-node attach across restarts and replicas. The record is
/// separate from the data-path metadata (an s3 writer rewrites its manifest; it never touches this),
/// and deleting the volume deletes it.
/// </summary>
/// <remarks>
/// Read-modify-write is the caller's business: the CSI controller serialises calls per volume.
/// </remarks>
public interface IVolumePublications
{
    /// <summary>The nodes a volume is published to, ordered as recorded; empty when none.</summary>
    /// <exception cref="StoreNotFoundException">No such volume.</exception>
    Task<IReadOnlyList<VolumePublication>> GetPublicationsAsync(string volumeId, CancellationToken cancellationToken = default);

    /// <summary>Replaces the record (an empty list removes it).</summary>
    /// <exception cref="StoreNotFoundException">No such volume.</exception>
    Task SetPublicationsAsync(string volumeId, IReadOnlyList<VolumePublication> publications, CancellationToken cancellationToken = default);
}
