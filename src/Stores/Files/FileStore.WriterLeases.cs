using UblkCsi.Stores.Internal;

namespace UblkCsi.Stores.Files;

/// <summary>Writer generations as <c>writers/ID.json</c>, written atomically and synced before a lease is handed out.</summary>
public sealed partial class FileStore
{
    public async Task<ulong> GetWriterGenerationAsync(string volumeId, CancellationToken cancellationToken = default)
    {
        VolumeIds.Validate(volumeId);
        using var held = await _locks.AcquireAsync(volumeId, cancellationToken).ConfigureAwait(false);
        return ReadWriterGeneration(volumeId);
    }

    public async Task<ulong> TakeWriterLeaseAsync(string volumeId, CancellationToken cancellationToken = default)
    {
        VolumeIds.Validate(volumeId);
        using var held = await _locks.AcquireAsync(volumeId, cancellationToken).ConfigureAwait(false);
        var next = ReadWriterGeneration(volumeId) + 1;
        AtomicFile.WriteJson(WritersRecord(volumeId), new FileWriterRecord(1, next));
        return next;
    }

    private ulong ReadWriterGeneration(string volumeId)
    {
        _ = ReadVolumeRecord(volumeId) ?? throw new StoreNotFoundException(StoreObjectKind.Volume, volumeId);
        return AtomicFile.ReadJson<FileWriterRecord>(WritersRecord(volumeId))?.Generation ?? 0;
    }

    private string WritersRecord(string id) => Path.Combine(_writers, id + ".json");
}

/// <summary>The on-disk writer record of a volume.</summary>
internal sealed record FileWriterRecord(int Format, ulong Generation);
