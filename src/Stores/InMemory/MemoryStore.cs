using UblkCsi.Engine;
using UblkCsi.Stores.Internal;

namespace UblkCsi.Stores.InMemory;

/// <summary>
/// A store whose control path lives in process memory: for tests, benchmarks and the operator tool.
/// With data (the "memory" type) each volume's content is a sparse in-memory backend that lives as
/// long as the store, so reopening a volume sees what was written; snapshots and clones are copies
/// of the allocated pages. Without data (the "null" type) reads return zeros and writes vanish.
/// An optional capacity bounds the sum of volume sizes (CSI RESOURCE_EXHAUSTED beyond it).
/// </summary>
public sealed partial class MemoryStore : IVolumeStore, IVolumePublications, IVolumeQosRecord, IVolumeWriterLeases
{
    private const int CopyBlock = 1 << 20;

    private readonly object _gate = new();
    private readonly Dictionary<string, Volume> _volumes = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Snapshot> _snapshots = new(StringComparer.Ordinal);
    private readonly Dictionary<string, IReadOnlyList<VolumePublication>> _publications = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Engine.Backends.Qos.QosLimits> _qos = new(StringComparer.Ordinal);
    private readonly Dictionary<string, ulong> _writerGenerations = new(StringComparer.Ordinal);
    private readonly Func<long, IBlockBackend> _createData;
    private readonly KeyedLock _locks = new();

    /// <param name="type">"memory" or "null" (what <see cref="Type"/> reports).</param>
    /// <param name="createData">Makes the content holder for a volume of a given size.</param>
    /// <param name="retainsData">False when content is discarded (snapshots then copy nothing).</param>
    /// <param name="capacityBytes">Bound on the sum of volume and snapshot sizes; null for none.</param>
    public MemoryStore(string type, Func<long, IBlockBackend> createData, bool retainsData, long? capacityBytes)
    {
        Type = type;
        _createData = createData;
        RetainsData = retainsData;
        CapacityBytes = capacityBytes;
    }

    public string Type { get; }

    public string Description => CapacityBytes is { } c ? $"{Type} capacity={c}" : Type;

    /// <summary>True when written data can be read back.</summary>
    public bool RetainsData { get; }

    public long? CapacityBytes { get; }

    public async Task<VolumeInfo> CreateVolumeAsync(CreateVolumeRequest request, CancellationToken cancellationToken = default)
    {
        var id = VolumeIds.FromName(request.Name);
        using var _ = await _locks.AcquireAsync(id, cancellationToken).ConfigureAwait(false);
        IBlockBackend? sourceData;
        long sourceSize;
        lock (_gate)
        {
            (sourceData, sourceSize) = ResolveSource(request.Source);
        }

        var size = CreateRules.ValidateCreateSize(request.SizeBytes, request.Source, sourceSize);
        lock (_gate)
        {
            if (_volumes.TryGetValue(id, out var existing))
            {
                CreateRules.EnsureSameVolume(existing.Info, request.Name, size, request.Source);
                return existing.Info;
            }

            Reserve(size);
        }

        var data = _createData(size);
        if (sourceData is not null && RetainsData)
        {
            await CopyAsync(sourceData, data, sourceSize, cancellationToken).ConfigureAwait(false);
        }

        var volume = new Volume(new VolumeInfo(id, request.Name, size, DateTimeOffset.UtcNow, request.Source), data);
        lock (_gate)
        {
            _volumes.Add(id, volume);
        }

        return volume.Info;
    }

    public async Task<bool> DeleteVolumeAsync(string volumeId, CancellationToken cancellationToken = default)
    {
        VolumeIds.Validate(volumeId);
        using var _ = await _locks.AcquireAsync(volumeId, cancellationToken).ConfigureAwait(false);
        Volume? volume;
        lock (_gate)
        {
            if (!_volumes.Remove(volumeId, out volume))
            {
                return false;
            }

            _publications.Remove(volumeId);
            _qos.Remove(volumeId);
            _writerGenerations.Remove(volumeId);
        }

        await volume.Data.DisposeAsync().ConfigureAwait(false);
        return true;
    }

    public Task<VolumeInfo> GetVolumeAsync(string volumeId, CancellationToken cancellationToken = default)
    {
        VolumeIds.Validate(volumeId);
        lock (_gate)
        {
            return Task.FromResult(GetVolume(volumeId).Info);
        }
    }

    public Task<IReadOnlyList<VolumeInfo>> ListVolumesAsync(CancellationToken cancellationToken = default)
    {
        lock (_gate)
        {
            return Task.FromResult<IReadOnlyList<VolumeInfo>>(_volumes.Values.Select(v => v.Info).OrderBy(v => v.Id, StringComparer.Ordinal).ToList());
        }
    }

    public async Task<long> ExpandVolumeAsync(string volumeId, long newSizeBytes, CancellationToken cancellationToken = default)
    {
        VolumeIds.Validate(volumeId);
        var size = CreateRules.ValidateSize(newSizeBytes, "sizeBytes");
        using var _ = await _locks.AcquireAsync(volumeId, cancellationToken).ConfigureAwait(false);
        Volume volume;
        lock (_gate)
        {
            volume = GetVolume(volumeId);
            if (size <= volume.Info.SizeBytes)
            {
                return volume.Info.SizeBytes;
            }

            Reserve(size - volume.Info.SizeBytes);
        }

        // Backends have a fixed size: grow by moving the content into a larger one. Handles opened
        // before keep the old content holder and size (documented: reopen after expand).
        var grown = _createData(size);
        if (RetainsData)
        {
            await CopyAsync(volume.Data, grown, volume.Info.SizeBytes, cancellationToken).ConfigureAwait(false);
        }

        lock (_gate)
        {
            _volumes[volumeId] = new Volume(volume.Info with { SizeBytes = size }, grown);
        }

        return size;
    }

    public async Task<SnapshotInfo> CreateSnapshotAsync(string sourceVolumeId, string name, CancellationToken cancellationToken = default)
    {
        VolumeIds.Validate(sourceVolumeId, "sourceVolumeId");
        var id = VolumeIds.FromName(name);
        using var _ = await _locks.AcquireAsync("snapshot/" + id, cancellationToken).ConfigureAwait(false);
        Volume source;
        lock (_gate)
        {
            if (_snapshots.TryGetValue(id, out var existing))
            {
                CreateRules.EnsureSameSnapshot(existing.Info, name, sourceVolumeId);
                return existing.Info;
            }

            source = GetVolume(sourceVolumeId);
            Reserve(source.Info.SizeBytes);
        }

        var data = _createData(source.Info.SizeBytes);
        if (RetainsData)
        {
            await CopyAsync(source.Data, data, source.Info.SizeBytes, cancellationToken).ConfigureAwait(false);
        }

        var snapshot = new Snapshot(new SnapshotInfo(id, name, sourceVolumeId, source.Info.SizeBytes, DateTimeOffset.UtcNow, ReadyToUse: true), data);
        lock (_gate)
        {
            _snapshots.Add(id, snapshot);
        }

        return snapshot.Info;
    }

    public async Task<bool> DeleteSnapshotAsync(string snapshotId, CancellationToken cancellationToken = default)
    {
        VolumeIds.Validate(snapshotId, "snapshotId");
        Snapshot? snapshot;
        lock (_gate)
        {
            if (!_snapshots.Remove(snapshotId, out snapshot))
            {
                return false;
            }
        }

        await snapshot.Data.DisposeAsync().ConfigureAwait(false);
        return true;
    }

    public Task<SnapshotInfo> GetSnapshotAsync(string snapshotId, CancellationToken cancellationToken = default)
    {
        VolumeIds.Validate(snapshotId, "snapshotId");
        lock (_gate)
        {
            return _snapshots.TryGetValue(snapshotId, out var s)
                ? Task.FromResult(s.Info)
                : throw new StoreNotFoundException(StoreObjectKind.Snapshot, snapshotId);
        }
    }

    public Task<IReadOnlyList<SnapshotInfo>> ListSnapshotsAsync(string? sourceVolumeId = null, CancellationToken cancellationToken = default)
    {
        lock (_gate)
        {
            return Task.FromResult<IReadOnlyList<SnapshotInfo>>(_snapshots.Values
                .Select(s => s.Info)
                .Where(s => sourceVolumeId is null || s.SourceVolumeId == sourceVolumeId)
                .OrderBy(s => s.Id, StringComparer.Ordinal)
                .ToList());
        }
    }

    public Task<StoreCapacity> GetCapacityAsync(CancellationToken cancellationToken = default)
    {
        lock (_gate)
        {
            var max = CapacityBytes ?? StoreLimits.MaximumVolumeSizeBytes;
            return Task.FromResult(new StoreCapacity(CapacityBytes - UsedBytes(), max, StoreLimits.SizeGranularity));
        }
    }

    public Task<IBlockBackend> OpenVolumeAsync(string volumeId, VolumeAccess access = VolumeAccess.ReadWrite, CancellationToken cancellationToken = default)
    {
        VolumeIds.Validate(volumeId);
        lock (_gate)
        {
            var volume = GetVolume(volumeId);
            return Task.FromResult<IBlockBackend>(new MemoryVolume(volumeId, volume.Data, access == VolumeAccess.ReadOnly));
        }
    }

    public async ValueTask DisposeAsync()
    {
        List<IBlockBackend> data;
        lock (_gate)
        {
            data = [.. _volumes.Values.Select(v => v.Data), .. _snapshots.Values.Select(s => s.Data)];
            _volumes.Clear();
            _snapshots.Clear();
        }

        foreach (var d in data)
        {
            await d.DisposeAsync().ConfigureAwait(false);
        }
    }

    /// <summary>Copies the non-zero blocks of <paramref name="from"/> (sparse by content).</summary>
    private static async Task CopyAsync(IBlockBackend from, IBlockBackend to, long length, CancellationToken cancellationToken)
    {
        var buffer = new byte[CopyBlock];
        for (long offset = 0; offset < length; offset += CopyBlock)
        {
            var n = (int)Math.Min(CopyBlock, length - offset);
            await from.ReadAsync(offset, buffer.AsMemory(0, n), cancellationToken).ConfigureAwait(false);
            for (var page = 0; page < n; page += 4096)
            {
                var slice = buffer.AsMemory(page, Math.Min(4096, n - page));
                if (slice.Span.ContainsAnyExcept((byte)0))
                {
                    await to.WriteAsync(offset + page, slice, BlockWriteFlags.None, cancellationToken).ConfigureAwait(false);
                }
            }
        }
    }

    private (IBlockBackend? Data, long Size) ResolveSource(VolumeSource? source)
    {
        switch (source)
        {
            case null:
                return (null, 0);
            case { Kind: VolumeSourceKind.Snapshot }:
                VolumeIds.Validate(source.Id, "sourceSnapshotId");
                return _snapshots.TryGetValue(source.Id, out var s)
                    ? (s.Data, s.Info.SizeBytes)
                    : throw new StoreNotFoundException(StoreObjectKind.Snapshot, source.Id);
            default:
                VolumeIds.Validate(source.Id, "sourceVolumeId");
                var v = GetVolume(source.Id);
                return (v.Data, v.Info.SizeBytes);
        }
    }

    public Task<IReadOnlyList<VolumePublication>> GetPublicationsAsync(string volumeId, CancellationToken cancellationToken = default)
    {
        VolumeIds.Validate(volumeId);
        lock (_gate)
        {
            _ = GetVolume(volumeId);
            return Task.FromResult(_publications.GetValueOrDefault(volumeId) ?? []);
        }
    }

    public Task SetPublicationsAsync(string volumeId, IReadOnlyList<VolumePublication> publications, CancellationToken cancellationToken = default)
    {
        VolumeIds.Validate(volumeId);
        lock (_gate)
        {
            _ = GetVolume(volumeId);
            if (publications.Count == 0)
            {
                _publications.Remove(volumeId);
            }
            else
            {
                _publications[volumeId] = publications.ToArray();
            }
        }

        return Task.CompletedTask;
    }

    private Volume GetVolume(string volumeId) =>
        _volumes.TryGetValue(volumeId, out var volume) ? volume : throw new StoreNotFoundException(StoreObjectKind.Volume, volumeId);

    private void Reserve(long bytes)
    {
        if (CapacityBytes is { } capacity && UsedBytes() + bytes > capacity)
        {
            throw new StoreCapacityException($"{Type} store capacity {capacity} bytes: {capacity - UsedBytes()} left, {bytes} requested");
        }
    }

    private long UsedBytes() => _volumes.Values.Sum(v => v.Info.SizeBytes) + _snapshots.Values.Sum(s => s.Info.SizeBytes);

    private sealed record Volume(VolumeInfo Info, IBlockBackend Data);

    private sealed record Snapshot(SnapshotInfo Info, IBlockBackend Data);
}

/// <summary>An opened memory-store volume: a view that checks requests and forwards them to the content.</summary>
internal sealed class MemoryVolume(string volumeId, IBlockBackend data, bool readOnly)
    : StoreVolume(volumeId, data.Info with { Features = data.Info.Features & ~BlockBackendFeatures.ReadOnly }, readOnly)
{
    public override ValueTask DisposeAsync() => default; // the store owns the content

    protected override ValueTask ReadCoreAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken) =>
        data.ReadAsync(offset, buffer, cancellationToken);

    protected override ValueTask WriteCoreAsync(long offset, ReadOnlyMemory<byte> bytes, bool fua, CancellationToken cancellationToken) =>
        data.WriteAsync(offset, bytes, fua ? BlockWriteFlags.Fua : BlockWriteFlags.None, cancellationToken);

    protected override ValueTask FlushCoreAsync(CancellationToken cancellationToken) => data.FlushAsync(cancellationToken);

    protected override ValueTask DiscardCoreAsync(long offset, long length, CancellationToken cancellationToken) =>
        data.DiscardAsync(offset, length, cancellationToken);

    protected override ValueTask WriteZeroesCoreAsync(long offset, long length, CancellationToken cancellationToken) =>
        data.WriteZeroesAsync(offset, length, cancellationToken);
}
