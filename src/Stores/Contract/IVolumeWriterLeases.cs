namespace UblkCsi.Stores;

/// <summary>
/// The writer generation of each volume, kept with the volume's metadata by a store that a
/// block-store server serves to remote writers. Opening a volume for writing takes the lease (the
/// generation goes up by one and is durable before it is returned); the server refuses mutations
/// that carry an older generation, so a writer that was superseded (its node partitioned, the volume
/// published elsewhere) can no longer change the volume. The record survives a restart of the server
/// and is deleted with the volume.
/// </summary>
public interface IVolumeWriterLeases
{
    /// <summary>The current generation; 0 when the volume was never opened for writing.</summary>
    /// <exception cref="StoreNotFoundException">No such volume.</exception>
    Task<ulong> GetWriterGenerationAsync(string volumeId, CancellationToken cancellationToken = default);

    /// <summary>Raises the generation by one, durably, and returns the new one.</summary>
    /// <exception cref="StoreNotFoundException">No such volume.</exception>
    Task<ulong> TakeWriterLeaseAsync(string volumeId, CancellationToken cancellationToken = default);
}
