namespace UblkCsi.Stores.InMemory;

/// <summary>Writer generations in process memory, gone with the volume.</summary>
public sealed partial class MemoryStore
{
    public Task<ulong> GetWriterGenerationAsync(string volumeId, CancellationToken cancellationToken = default)
    {
        VolumeIds.Validate(volumeId);
        lock (_gate)
        {
            _ = GetVolume(volumeId);
            return Task.FromResult(_writerGenerations.GetValueOrDefault(volumeId));
        }
    }

    public Task<ulong> TakeWriterLeaseAsync(string volumeId, CancellationToken cancellationToken = default)
    {
        VolumeIds.Validate(volumeId);
        lock (_gate)
        {
            _ = GetVolume(volumeId);
            var next = _writerGenerations.GetValueOrDefault(volumeId) + 1;
            _writerGenerations[volumeId] = next;
            return Task.FromResult(next);
        }
    }
}
