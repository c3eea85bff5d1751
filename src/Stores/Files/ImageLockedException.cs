namespace UblkCsi.Stores.Files;

/// <summary>A read-write open of a file volume found its image locked by another writer (<see cref="FileVolume.Open"/>).</summary>
public sealed class ImageLockedException(string volumeId)
    : StoreException(StoreErrorCode.FailedPrecondition, $"volume '{volumeId}' is already open for writing on this node");
