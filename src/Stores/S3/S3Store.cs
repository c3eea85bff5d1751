using UblkCsi.Engine;
using UblkCsi.Stores.Internal;

namespace UblkCsi.Stores.S3;

/// <summary>Settings of an s3 store (everything but credentials).</summary>
/// <param name="Bucket">Bucket name.</param>
/// <param name="Prefix">Key prefix ending in "/" or empty.</param>
/// <param name="Endpoint">Service URL for S3-compatible servers; null for AWS.</param>
/// <param name="Region">Signing region.</param>
/// <param name="PathStyle">Path-style addressing (most S3-compatible servers need it).</param>
/// <param name="ChunkSize">Chunk size of new volumes (clones keep their source's).</param>
/// <param name="CacheDirectory">Node-local directory for the write-back cache.</param>
/// <param name="CacheBytes">Bound on cached chunk bytes per open volume (clean chunks are evicted beyond it).</param>
/// <param name="DirtyLimitBytes">Bound on dirty (not yet uploaded) bytes per open volume; writers wait beyond it.</param>
/// <param name="UploadConcurrency">Parallel chunk uploads per open volume.</param>
/// <param name="ReadAheadChunks">Chunks fetched ahead of sequential reads.</param>
public sealed record S3StoreOptions(
    string Bucket,
    string Prefix,
    string? Endpoint,
    string Region,
    bool PathStyle,
    int ChunkSize,
    string CacheDirectory,
    long CacheBytes,
    long DirtyLimitBytes,
    int UploadConcurrency,
    int ReadAheadChunks);

/// <summary>
/// Volumes as fixed-size chunk objects plus a manifest per volume in an S3 bucket (AWS or any
/// S3-compatible server). Snapshots and clones copy the manifest, not the data: chunk objects are
/// immutable versions, and a manifest names the versions it uses (see <see cref="S3Keys"/> and
/// <see cref="S3Manifest"/>).
/// </summary>
/// <remarks>
/// <para>Reference tracking: before a snapshot or clone manifest is written, a marker
/// refs/UUID/… is put for every incarnation it borrows chunks from, and only then is the source
/// manifest read. A writer that supersedes a chunk version deletes the old version right away only
/// when no marker exists for its incarnation (checked after its new manifest is written, so a
/// snapshot that raced with it read the new manifest). Otherwise deletion waits for the garbage
/// collection that runs when a volume or snapshot is deleted: it keeps every version a remaining
/// manifest references and every version at or above the live volume's NextVersion.</para>
/// <para>One writer per volume: the CSI controller grants single-node attach, and the data path
/// fences: a read-write open takes a new writer generation and an older writer's next flush fails
/// (<see cref="S3WriterLog"/>).</para>
/// <para>Crash safety: the local cache is disposable. A FLUSH returns after every dirty chunk is
/// uploaded and a journal object naming them is written (its writer still holding the newest lease),
/// so whatever was flushed survives losing the node.</para>
/// </remarks>
public sealed partial class S3Store : IVolumeStore
{
    private readonly KeyedLock _locks = new();

    internal S3Store(S3StoreOptions options, S3Bucket bucket)
    {
        Options = options;
        Bucket = bucket;
    }

    public S3StoreOptions Options { get; }

    internal S3Bucket Bucket { get; }

    public string Type => S3StoreProvider.TypeName;

    public string Description =>
        $"s3 bucket={Options.Bucket} prefix={Options.Prefix} endpoint={Options.Endpoint ?? "aws"} region={Options.Region}";

    public async Task<VolumeInfo> CreateVolumeAsync(CreateVolumeRequest request, CancellationToken cancellationToken = default)
    {
        var id = VolumeIds.FromName(request.Name);
        using var _ = await _locks.AcquireAsync(id, cancellationToken).ConfigureAwait(false);

        var source = request.Source is null ? null : await ReadSourceAsync(request.Source, cancellationToken).ConfigureAwait(false);
        var size = CreateRules.ValidateCreateSize(request.SizeBytes, request.Source, source?.SizeBytes ?? 0);

        if (await ReadManifestAsync(S3Keys.Volume(id), cancellationToken).ConfigureAwait(false) is { } existing)
        {
            CreateRules.EnsureSameVolume(existing.ToVolumeInfo(), request.Name, size, request.Source);
            return existing.ToVolumeInfo();
        }

        var uuid = Guid.NewGuid().ToString("N");
        var manifest = new S3Manifest
        {
            Id = id,
            Name = request.Name,
            SizeBytes = size,
            CreatedUtc = DateTimeOffset.UtcNow,
            SourceKind = request.Source?.Kind,
            SourceId = request.Source?.Id,
            Uuid = uuid,
            ChunkSize = Options.ChunkSize,
        };

        if (source is not null && request.Source is not null)
        {
            // Markers first, then re-read the source: see the class remarks.
            await PutRefsAsync(source.Lineage, snapshot: false, id, cancellationToken).ConfigureAwait(false);
            source = await ReadSourceAsync(request.Source, cancellationToken).ConfigureAwait(false);
            if (source.Lineage.Count >= ushort.MaxValue)
            {
                throw new StoreException(StoreErrorCode.FailedPrecondition, $"source '{request.Source.Id}' is a clone {source.Lineage.Count} levels deep; clone a fresh copy instead");
            }

            manifest.ChunkSize = source.ChunkSize;
            manifest.Lineage = [.. source.Lineage];
            var entries = source.ReadEntries();
            Array.Resize(ref entries, (int)((size + source.ChunkSize - 1) / source.ChunkSize));
            manifest.WriteEntries(entries);
        }

        manifest.Lineage.Add(new LineageEntry(uuid, id));
        try
        {
            await WriteManifestAsync(S3Keys.Volume(id), manifest, cancellationToken).ConfigureAwait(false);
        }
        catch when (manifest.Lineage.Count > 1)
        {
            // Markers without a manifest hold nothing, but leave no debris when we can help it.
            var markers = manifest.Lineage.SkipLast(1).Select(l => S3Keys.Ref(l.Uuid, snapshot: false, id)).ToList();
            try
            {
                await Bucket.DeleteAsync(markers, CancellationToken.None).ConfigureAwait(false);
            }
            catch (StoreException)
            {
                // The original failure matters more; the stray markers are harmless.
            }

            throw;
        }

        return manifest.ToVolumeInfo();
    }

    public async Task<bool> DeleteVolumeAsync(string volumeId, CancellationToken cancellationToken = default)
    {
        VolumeIds.Validate(volumeId);
        using var _ = await _locks.AcquireAsync(volumeId, cancellationToken).ConfigureAwait(false);
        var manifest = await ReadManifestAsync(S3Keys.Volume(volumeId), cancellationToken).ConfigureAwait(false);
        if (manifest is null)
        {
            return false;
        }

        manifest = await S3WriterLog.ReadStateAsync(this, volumeId, cancellationToken).ConfigureAwait(false) ?? manifest;
        await Bucket.DeleteAsync([S3Keys.Volume(volumeId), S3Keys.Publications(volumeId), S3Keys.Qos(volumeId)], cancellationToken).ConfigureAwait(false);
        await Bucket.DeleteAsync(await Bucket.ListAsync(S3Keys.WriterPrefix(volumeId), cancellationToken).ConfigureAwait(false), cancellationToken).ConfigureAwait(false);
        var borrowed = manifest.Lineage.Take(manifest.Lineage.Count - 1).ToList();
        await Bucket.DeleteAsync(borrowed.Select(l => S3Keys.Ref(l.Uuid, snapshot: false, volumeId)).ToList(), cancellationToken).ConfigureAwait(false);
        foreach (var incarnation in manifest.Lineage)
        {
            await CollectGarbageAsync(incarnation, cancellationToken).ConfigureAwait(false);
        }

        return true;
    }

    public async Task<VolumeInfo> GetVolumeAsync(string volumeId, CancellationToken cancellationToken = default)
    {
        VolumeIds.Validate(volumeId);
        var manifest = await ReadManifestAsync(S3Keys.Volume(volumeId), cancellationToken).ConfigureAwait(false);
        return manifest?.ToVolumeInfo() ?? throw new StoreNotFoundException(StoreObjectKind.Volume, volumeId);
    }

    public async Task<IReadOnlyList<VolumeInfo>> ListVolumesAsync(CancellationToken cancellationToken = default)
    {
        var list = new List<VolumeInfo>();
        foreach (var manifest in await ReadAllManifestsAsync(S3Keys.Volumes, cancellationToken).ConfigureAwait(false))
        {
            list.Add(manifest.ToVolumeInfo());
        }

        return list;
    }

    public async Task<long> ExpandVolumeAsync(string volumeId, long newSizeBytes, CancellationToken cancellationToken = default)
    {
        VolumeIds.Validate(volumeId);
        var size = CreateRules.ValidateSize(newSizeBytes, "sizeBytes");
        using var _ = await _locks.AcquireAsync(volumeId, cancellationToken).ConfigureAwait(false);
        var manifest = await ReadManifestAsync(S3Keys.Volume(volumeId), cancellationToken).ConfigureAwait(false)
            ?? throw new StoreNotFoundException(StoreObjectKind.Volume, volumeId);
        if (size <= manifest.SizeBytes)
        {
            return manifest.SizeBytes;
        }

        // The new chunks are absent (zeros); the map needs no new entries. Readers of the volume's
        // state take the larger of this size and the writer's (S3WriterLog.ReadStateAsync).
        manifest.SizeBytes = size;
        await WriteManifestAsync(S3Keys.Volume(volumeId), manifest, cancellationToken).ConfigureAwait(false);
        return size;
    }

    public async Task<SnapshotInfo> CreateSnapshotAsync(string sourceVolumeId, string name, CancellationToken cancellationToken = default)
    {
        VolumeIds.Validate(sourceVolumeId, "sourceVolumeId");
        var id = VolumeIds.FromName(name);
        using var _ = await _locks.AcquireAsync("snapshot/" + id, cancellationToken).ConfigureAwait(false);
        if (await ReadManifestAsync(S3Keys.Snapshot(id), cancellationToken).ConfigureAwait(false) is { } existing)
        {
            CreateRules.EnsureSameSnapshot(existing.ToSnapshotInfo(), name, sourceVolumeId);
            return existing.ToSnapshotInfo();
        }

        var source = await ReadManifestAsync(S3Keys.Volume(sourceVolumeId), cancellationToken).ConfigureAwait(false)
            ?? throw new StoreNotFoundException(StoreObjectKind.Volume, sourceVolumeId);
        await PutRefsAsync(source.Lineage, snapshot: true, id, cancellationToken).ConfigureAwait(false);
        source = await S3WriterLog.ReadStateAsync(this, sourceVolumeId, cancellationToken).ConfigureAwait(false)
            ?? throw new StoreNotFoundException(StoreObjectKind.Volume, sourceVolumeId);

        var snapshot = new S3Manifest
        {
            Kind = "snapshot",
            Id = id,
            Name = name,
            SourceVolumeId = sourceVolumeId,
            SizeBytes = source.SizeBytes,
            ChunkSize = source.ChunkSize,
            CreatedUtc = DateTimeOffset.UtcNow,
            Lineage = source.Lineage,
            Chunks = source.Chunks,
        };
        await WriteManifestAsync(S3Keys.Snapshot(id), snapshot, cancellationToken).ConfigureAwait(false);
        return snapshot.ToSnapshotInfo();
    }

    public async Task<bool> DeleteSnapshotAsync(string snapshotId, CancellationToken cancellationToken = default)
    {
        VolumeIds.Validate(snapshotId, "snapshotId");
        using var _ = await _locks.AcquireAsync("snapshot/" + snapshotId, cancellationToken).ConfigureAwait(false);
        var manifest = await ReadManifestAsync(S3Keys.Snapshot(snapshotId), cancellationToken).ConfigureAwait(false);
        if (manifest is null)
        {
            return false;
        }

        await Bucket.DeleteAsync([S3Keys.Snapshot(snapshotId)], cancellationToken).ConfigureAwait(false);
        await Bucket.DeleteAsync(manifest.Lineage.Select(l => S3Keys.Ref(l.Uuid, snapshot: true, snapshotId)).ToList(), cancellationToken).ConfigureAwait(false);
        foreach (var incarnation in manifest.Lineage)
        {
            await CollectGarbageAsync(incarnation, cancellationToken).ConfigureAwait(false);
        }

        return true;
    }

    public async Task<SnapshotInfo> GetSnapshotAsync(string snapshotId, CancellationToken cancellationToken = default)
    {
        VolumeIds.Validate(snapshotId, "snapshotId");
        var manifest = await ReadManifestAsync(S3Keys.Snapshot(snapshotId), cancellationToken).ConfigureAwait(false);
        return manifest?.ToSnapshotInfo() ?? throw new StoreNotFoundException(StoreObjectKind.Snapshot, snapshotId);
    }

    public async Task<IReadOnlyList<SnapshotInfo>> ListSnapshotsAsync(string? sourceVolumeId = null, CancellationToken cancellationToken = default)
    {
        var list = new List<SnapshotInfo>();
        foreach (var manifest in await ReadAllManifestsAsync(S3Keys.Snapshots, cancellationToken).ConfigureAwait(false))
        {
            if (sourceVolumeId is null || manifest.SourceVolumeId == sourceVolumeId)
            {
                list.Add(manifest.ToSnapshotInfo());
            }
        }

        return list;
    }

    public Task<StoreCapacity> GetCapacityAsync(CancellationToken cancellationToken = default) =>
        Task.FromResult(new StoreCapacity(null, StoreLimits.MaximumVolumeSizeBytes, StoreLimits.SizeGranularity));

    public async Task<IBlockBackend> OpenVolumeAsync(string volumeId, VolumeAccess access = VolumeAccess.ReadWrite, CancellationToken cancellationToken = default)
    {
        VolumeIds.Validate(volumeId);
        if (access == VolumeAccess.ReadOnly)
        {
            // Readers take no lease: they see what the newest writer generation committed.
            var state = await S3WriterLog.ReadStateAsync(this, volumeId, cancellationToken).ConfigureAwait(false)
                ?? throw new StoreNotFoundException(StoreObjectKind.Volume, volumeId);
            return S3Volume.OpenReader(this, state);
        }

        var control = await ReadManifestAsync(S3Keys.Volume(volumeId), cancellationToken).ConfigureAwait(false)
            ?? throw new StoreNotFoundException(StoreObjectKind.Volume, volumeId);
        return await S3Volume.OpenWriterAsync(this, control, cancellationToken).ConfigureAwait(false);
    }

    public ValueTask DisposeAsync()
    {
        Bucket.Dispose();
        return default;
    }

    internal async Task<S3Manifest?> ReadManifestAsync(string key, CancellationToken cancellationToken)
    {
        var bytes = await Bucket.GetAsync(key, cancellationToken).ConfigureAwait(false);
        return bytes is null ? null : S3Manifest.Parse(bytes, key);
    }

    internal Task WriteManifestAsync(string key, S3Manifest manifest, CancellationToken cancellationToken) =>
        Bucket.PutAsync(key, manifest.Serialize(), cancellationToken);

    /// <summary>
    /// Deletes the chunk versions of one incarnation that nothing references any more: not the owner
    /// volume's manifest (when it still exists), not any snapshot or clone holding a marker, and
    /// below the owner's NextVersion (uploads in flight are never touched).
    /// </summary>
    internal async Task CollectGarbageAsync(LineageEntry incarnation, CancellationToken cancellationToken)
    {
        var referenced = new HashSet<(long Index, ulong Version)>();
        var floor = ulong.MaxValue;
        var (owner, settled) = await S3WriterLog.ReadSettledStateAsync(this, incarnation.VolumeId, cancellationToken).ConfigureAwait(false);
        if (!settled)
        {
            return; // a writer is opening the owner: collect next time (see ReadSettledStateAsync)
        }

        if (owner is not null && owner.Uuid == incarnation.Uuid)
        {
            floor = owner.NextVersion;
            AddReferences(owner, incarnation.Uuid, referenced);
        }

        foreach (var marker in await Bucket.ListAsync(S3Keys.RefPrefix(incarnation.Uuid), cancellationToken).ConfigureAwait(false))
        {
            var name = marker[S3Keys.RefPrefix(incarnation.Uuid).Length..];
            S3Manifest? referrer = null;
            if (name.StartsWith("snap-", StringComparison.Ordinal))
            {
                referrer = await ReadManifestAsync(S3Keys.Snapshot(name[5..]), cancellationToken).ConfigureAwait(false);
            }
            else if (name.StartsWith("vol-", StringComparison.Ordinal))
            {
                (referrer, var referrerSettled) = await S3WriterLog.ReadSettledStateAsync(this, name[4..], cancellationToken).ConfigureAwait(false);
                if (!referrerSettled)
                {
                    return; // a writer is opening that clone: collect next time
                }
            }

            if (referrer is not null)
            {
                AddReferences(referrer, incarnation.Uuid, referenced);
            }
        }

        var garbage = new List<string>();
        foreach (var chunk in await Bucket.ListAsync(S3Keys.ChunkPrefix(incarnation.Uuid), cancellationToken).ConfigureAwait(false))
        {
            if (S3Keys.TryParseChunk(chunk[S3Keys.ChunkPrefix(incarnation.Uuid).Length..], out var index, out var version)
                && version < floor && !referenced.Contains((index, version)))
            {
                garbage.Add(chunk);
            }
        }

        await Bucket.DeleteAsync(garbage, cancellationToken).ConfigureAwait(false);
    }

    private static void AddReferences(S3Manifest manifest, string uuid, HashSet<(long, ulong)> referenced)
    {
        var lineageIndex = manifest.Lineage.FindIndex(l => l.Uuid == uuid);
        if (lineageIndex < 0)
        {
            return;
        }

        var entries = manifest.ReadEntries();
        for (long i = 0; i < entries.Length; i++)
        {
            if (entries[i] != 0 && (int)(entries[i] >> S3Manifest.VersionBits) == lineageIndex)
            {
                referenced.Add((i, entries[i] & S3Manifest.VersionMask));
            }
        }
    }

    private async Task<S3Manifest> ReadSourceAsync(VolumeSource source, CancellationToken cancellationToken)
    {
        var snapshot = source.Kind == VolumeSourceKind.Snapshot;
        VolumeIds.Validate(source.Id, snapshot ? "sourceSnapshotId" : "sourceVolumeId");
        var manifest = snapshot
            ? await ReadManifestAsync(S3Keys.Snapshot(source.Id), cancellationToken).ConfigureAwait(false)
            : await S3WriterLog.ReadStateAsync(this, source.Id, cancellationToken).ConfigureAwait(false);
        return manifest
            ?? throw new StoreNotFoundException(snapshot ? StoreObjectKind.Snapshot : StoreObjectKind.Volume, source.Id);
    }

    private async Task PutRefsAsync(IEnumerable<LineageEntry> lineage, bool snapshot, string id, CancellationToken cancellationToken)
    {
        foreach (var incarnation in lineage)
        {
            await Bucket.PutAsync(S3Keys.Ref(incarnation.Uuid, snapshot, id), ReadOnlyMemory<byte>.Empty, cancellationToken).ConfigureAwait(false);
        }
    }

    private async Task<List<S3Manifest>> ReadAllManifestsAsync(string folder, CancellationToken cancellationToken)
    {
        var manifests = new List<S3Manifest>();
        foreach (var key in await Bucket.ListAsync(folder, cancellationToken).ConfigureAwait(false))
        {
            if (!key.EndsWith(".json", StringComparison.Ordinal) || key.Length <= folder.Length + ".json".Length)
            {
                continue;
            }

            var id = key[folder.Length..^".json".Length];
            if (VolumeIds.IsValidId(id)
                && await ReadManifestAsync(key, cancellationToken).ConfigureAwait(false) is { } manifest)
            {
                manifests.Add(manifest);
            }
        }

        return manifests.OrderBy(m => m.Id, StringComparer.Ordinal).ToList();
    }
}
