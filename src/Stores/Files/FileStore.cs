using Microsoft.Win32.SafeHandles;
using UblkCsi.Engine;
using UblkCsi.Stores.Internal;

namespace UblkCsi.Stores.Files;

/// <summary>How the file store copies an image for a snapshot or clone.</summary>
public enum ReflinkMode
{
    /// <summary>Reflink (FICLONE) when the filesystem can, else a sparse-aware copy.</summary>
    Auto,

    /// <summary>Reflink or fail: guarantees snapshots cost no space or time.</summary>
    Always,

    /// <summary>Always a sparse-aware copy.</summary>
    Never,
}

/// <summary>Settings of a file store.</summary>
/// <param name="Root">Absolute path of an existing directory (node-local or a shared filesystem).</param>
/// <param name="Reflink">Snapshot and clone strategy.</param>
/// <param name="DirectIo">How volumes reach their images: O_DIRECT (Auto, the default: where the filesystem allows it) or the page cache.</param>
/// <param name="ExclusiveWriters">
/// A read-write open locks the image (<see cref="FileVolume.Open"/>), so a second writer on this
/// node (another process, another device, the operator tool) is refused. Off only for an opener that
/// arbitrates its writers itself and overlaps its own opens: the block-store server.
/// </param>
public sealed record FileStoreOptions(string Root, ReflinkMode Reflink = ReflinkMode.Auto, DirectIoMode DirectIo = DirectIoMode.Auto, bool ExclusiveWriters = true)
{
    /// <summary>
    /// How long a read-write open waits for another writer's lock to go: the previous process of a
    /// restarted node plugin lets go only as it exits.
    /// </summary>
    public TimeSpan WriterLockWait { get; init; } = DefaultWriterLockWait;

    /// <summary>30 s: a node plugin's previous process is gone well within it.</summary>
    public static readonly TimeSpan DefaultWriterLockWait = TimeSpan.FromSeconds(30);
}

/// <summary>
/// Volumes as sparse image files under a root directory:
/// <c>volumes/ID.img</c> with its metadata in <c>volumes/ID.json</c>, snapshots as
/// <c>snapshots/ID.img</c> + <c>snapshots/ID.json</c>. The JSON sidecar is written last and removed
/// first, so it is the commit point: an image without a sidecar is debris of an interrupted create
/// and is replaced or removed. Snapshots and clones are reflinks (instant, shared extents) where the
/// filesystem supports FICLONE (xfs, btrfs, bcachefs), sparse-aware copies elsewhere.
/// </summary>
public sealed partial class FileStore : IVolumeStore, IVolumePublications, IVolumeQosRecord, IVolumeWriterLeases
{
    private const string VolumesDir = "volumes";
    private const string SnapshotsDir = "snapshots";
    private const string StagingDir = ".staging";
    private const string PublicationsDir = "publications";
    private const string QosDir = "qos";
    private const string WritersDir = "writers";
    private const int NoSpace = 28; // ENOSPC, which .NET reports in IOException.HResult on Linux
    private static readonly TimeSpan StaleStagingAge = TimeSpan.FromHours(1);

    private readonly KeyedLock _locks = new();
    private readonly string _volumes;
    private readonly string _snapshots;
    private readonly string _staging;
    private readonly string _publications;
    private readonly string _qos;
    private readonly string _writers;

    public FileStore(FileStoreOptions options)
    {
        Options = options;
        if (!Path.IsPathFullyQualified(options.Root))
        {
            throw new StoreParameterException("root", $"must be an absolute path, got '{options.Root}'");
        }

        if (!Directory.Exists(options.Root))
        {
            throw new StoreParameterException("root", $"directory '{options.Root}' does not exist");
        }

        _volumes = Directory.CreateDirectory(Path.Combine(options.Root, VolumesDir)).FullName;
        _snapshots = Directory.CreateDirectory(Path.Combine(options.Root, SnapshotsDir)).FullName;
        _staging = Directory.CreateDirectory(Path.Combine(options.Root, StagingDir)).FullName;
        _publications = Directory.CreateDirectory(Path.Combine(options.Root, PublicationsDir)).FullName;
        _qos = Directory.CreateDirectory(Path.Combine(options.Root, QosDir)).FullName;
        _writers = Directory.CreateDirectory(Path.Combine(options.Root, WritersDir)).FullName;
        RemoveStaleStagingFiles();
    }

    public FileStoreOptions Options { get; }

    public string Type => FileStoreProvider.TypeName;

    public string Description => $"file root={Options.Root}";

    public async Task<VolumeInfo> CreateVolumeAsync(CreateVolumeRequest request, CancellationToken cancellationToken = default)
    {
        var id = VolumeIds.FromName(request.Name);
        using var _ = await _locks.AcquireAsync(id, cancellationToken).ConfigureAwait(false);

        var (sourceImage, sourceSize) = request.Source is null ? (null, 0L) : ResolveSource(request.Source);
        var size = CreateRules.ValidateCreateSize(request.SizeBytes, request.Source, sourceSize);

        var existing = ReadVolumeRecord(id);
        if (existing is not null)
        {
            CreateRules.EnsureSameVolume(existing.ToInfo(), request.Name, size, request.Source);
            return existing.ToInfo();
        }

        var image = StageImage(id, sourceImage, size);
        File.Move(image, VolumeImage(id), overwrite: true);
        var record = new FileVolumeRecord(1, id, request.Name, size, DateTimeOffset.UtcNow, request.Source?.Kind, request.Source?.Id);
        AtomicFile.WriteJson(VolumeSidecar(id), record);
        return record.ToInfo();
    }

    public async Task<bool> DeleteVolumeAsync(string volumeId, CancellationToken cancellationToken = default)
    {
        VolumeIds.Validate(volumeId);
        using var _ = await _locks.AcquireAsync(volumeId, cancellationToken).ConfigureAwait(false);
        var existed = File.Exists(VolumeSidecar(volumeId));
        File.Delete(VolumeSidecar(volumeId));
        LinuxFile.SyncDirectory(_volumes);
        File.Delete(VolumeImage(volumeId));
        File.Delete(PublicationsRecord(volumeId));
        File.Delete(QosRecord(volumeId));
        File.Delete(WritersRecord(volumeId));
        return existed;
    }

    public Task<VolumeInfo> GetVolumeAsync(string volumeId, CancellationToken cancellationToken = default)
    {
        VolumeIds.Validate(volumeId);
        var record = ReadVolumeRecord(volumeId) ?? throw new StoreNotFoundException(StoreObjectKind.Volume, volumeId);
        return Task.FromResult(record.ToInfo());
    }

    public Task<IReadOnlyList<VolumeInfo>> ListVolumesAsync(CancellationToken cancellationToken = default)
    {
        var list = new List<VolumeInfo>();
        foreach (var id in ListIds(_volumes))
        {
            if (ReadVolumeRecord(id) is { } record)
            {
                list.Add(record.ToInfo());
            }
        }

        return Task.FromResult<IReadOnlyList<VolumeInfo>>(list);
    }

    public async Task<long> ExpandVolumeAsync(string volumeId, long newSizeBytes, CancellationToken cancellationToken = default)
    {
        VolumeIds.Validate(volumeId);
        var size = CreateRules.ValidateSize(newSizeBytes, "sizeBytes");
        using var _ = await _locks.AcquireAsync(volumeId, cancellationToken).ConfigureAwait(false);
        var record = ReadVolumeRecord(volumeId) ?? throw new StoreNotFoundException(StoreObjectKind.Volume, volumeId);
        if (size <= record.SizeBytes)
        {
            return record.SizeBytes;
        }

        // Grow the image first: if we crash before the sidecar is rewritten, the volume keeps its
        // recorded size and a retry finishes the job.
        using (var file = File.OpenHandle(VolumeImage(volumeId), FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite))
        {
            ThrowOnError(LinuxFile.Truncate(file, size), "ftruncate");
            ThrowOnError(LinuxFile.DataSync(file), "fdatasync");
        }

        AtomicFile.WriteJson(VolumeSidecar(volumeId), record with { SizeBytes = size });
        return size;
    }

    public async Task<SnapshotInfo> CreateSnapshotAsync(string sourceVolumeId, string name, CancellationToken cancellationToken = default)
    {
        VolumeIds.Validate(sourceVolumeId, "sourceVolumeId");
        var id = VolumeIds.FromName(name);
        using var _ = await _locks.AcquireAsync("snapshot/" + id, cancellationToken).ConfigureAwait(false);
        var existing = ReadSnapshotRecord(id);
        if (existing is not null)
        {
            CreateRules.EnsureSameSnapshot(existing.ToInfo(), name, sourceVolumeId);
            return existing.ToInfo();
        }

        using var sourceLock = await _locks.AcquireAsync(sourceVolumeId, cancellationToken).ConfigureAwait(false);
        var source = ReadVolumeRecord(sourceVolumeId) ?? throw new StoreNotFoundException(StoreObjectKind.Volume, sourceVolumeId);
        var image = StageImage(id, VolumeImage(sourceVolumeId), source.SizeBytes);
        File.Move(image, SnapshotImage(id), overwrite: true);
        var record = new FileSnapshotRecord(1, id, name, sourceVolumeId, source.SizeBytes, DateTimeOffset.UtcNow);
        AtomicFile.WriteJson(SnapshotSidecar(id), record);
        return record.ToInfo();
    }

    public async Task<bool> DeleteSnapshotAsync(string snapshotId, CancellationToken cancellationToken = default)
    {
        VolumeIds.Validate(snapshotId, "snapshotId");
        using var _ = await _locks.AcquireAsync("snapshot/" + snapshotId, cancellationToken).ConfigureAwait(false);
        var existed = File.Exists(SnapshotSidecar(snapshotId));
        File.Delete(SnapshotSidecar(snapshotId));
        LinuxFile.SyncDirectory(_snapshots);
        File.Delete(SnapshotImage(snapshotId));
        return existed;
    }

    public Task<SnapshotInfo> GetSnapshotAsync(string snapshotId, CancellationToken cancellationToken = default)
    {
        VolumeIds.Validate(snapshotId, "snapshotId");
        var record = ReadSnapshotRecord(snapshotId) ?? throw new StoreNotFoundException(StoreObjectKind.Snapshot, snapshotId);
        return Task.FromResult(record.ToInfo());
    }

    public Task<IReadOnlyList<SnapshotInfo>> ListSnapshotsAsync(string? sourceVolumeId = null, CancellationToken cancellationToken = default)
    {
        var list = new List<SnapshotInfo>();
        foreach (var id in ListIds(_snapshots))
        {
            if (ReadSnapshotRecord(id) is { } record && (sourceVolumeId is null || record.SourceVolumeId == sourceVolumeId))
            {
                list.Add(record.ToInfo());
            }
        }

        return Task.FromResult<IReadOnlyList<SnapshotInfo>>(list);
    }

    public Task<StoreCapacity> GetCapacityAsync(CancellationToken cancellationToken = default)
    {
        var available = LinuxFile.AvailableBytes(Options.Root);
        return Task.FromResult(new StoreCapacity(available, StoreLimits.MaximumVolumeSizeBytes, StoreLimits.SizeGranularity));
    }

    public async Task<IBlockBackend> OpenVolumeAsync(string volumeId, VolumeAccess access = VolumeAccess.ReadWrite, CancellationToken cancellationToken = default)
    {
        VolumeIds.Validate(volumeId);
        var record = ReadVolumeRecord(volumeId) ?? throw new StoreNotFoundException(StoreObjectKind.Volume, volumeId);
        var writerLockWait = Options.ExclusiveWriters ? Options.WriterLockWait : (TimeSpan?)null;
        return await FileVolume.OpenAsync(volumeId, VolumeImage(volumeId), record.SizeBytes, access == VolumeAccess.ReadOnly, Options.DirectIo, writerLockWait, cancellationToken).ConfigureAwait(false);
    }

    public async Task<IReadOnlyList<VolumePublication>> GetPublicationsAsync(string volumeId, CancellationToken cancellationToken = default)
    {
        VolumeIds.Validate(volumeId);
        using var held = await _locks.AcquireAsync(volumeId, cancellationToken).ConfigureAwait(false);
        _ = ReadVolumeRecord(volumeId) ?? throw new StoreNotFoundException(StoreObjectKind.Volume, volumeId);
        return AtomicFile.ReadJson<FilePublicationsRecord>(PublicationsRecord(volumeId))?.Nodes ?? [];
    }

    public async Task SetPublicationsAsync(string volumeId, IReadOnlyList<VolumePublication> publications, CancellationToken cancellationToken = default)
    {
        VolumeIds.Validate(volumeId);
        using var held = await _locks.AcquireAsync(volumeId, cancellationToken).ConfigureAwait(false);
        _ = ReadVolumeRecord(volumeId) ?? throw new StoreNotFoundException(StoreObjectKind.Volume, volumeId);
        if (publications.Count == 0)
        {
            File.Delete(PublicationsRecord(volumeId));
            LinuxFile.SyncDirectory(_publications);
        }
        else
        {
            AtomicFile.WriteJson(PublicationsRecord(volumeId), new FilePublicationsRecord(1, publications.ToArray()));
        }
    }

    public ValueTask DisposeAsync() => default;

    private (string Image, long Size) ResolveSource(VolumeSource source)
    {
        if (source.Kind == VolumeSourceKind.Snapshot)
        {
            VolumeIds.Validate(source.Id, "sourceSnapshotId");
            var snapshot = ReadSnapshotRecord(source.Id) ?? throw new StoreNotFoundException(StoreObjectKind.Snapshot, source.Id);
            return (SnapshotImage(source.Id), snapshot.SizeBytes);
        }

        VolumeIds.Validate(source.Id, "sourceVolumeId");
        var volume = ReadVolumeRecord(source.Id) ?? throw new StoreNotFoundException(StoreObjectKind.Volume, source.Id);
        return (VolumeImage(source.Id), volume.SizeBytes);
    }

    /// <summary>Builds a new image in the staging directory: empty, or a reflink/copy of a source.</summary>
    private string StageImage(string id, string? sourceImage, long size)
    {
        var staged = Path.Combine(_staging, $"{id}.{Guid.NewGuid():N}.img");
        try
        {
            using var target = File.OpenHandle(staged, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None);
            if (sourceImage is not null)
            {
                using var source = File.OpenHandle(sourceImage, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
                CopyImage(source, target, RandomAccess.GetLength(source));
            }

            ThrowOnError(LinuxFile.Truncate(target, size), "ftruncate");
            ThrowOnError(LinuxFile.DataSync(target), "fdatasync");
            return staged;
        }
        catch (IOException e) when (e.HResult == NoSpace)
        {
            File.Delete(staged);
            throw new StoreCapacityException($"no space left under '{Options.Root}' to copy an image of {size} bytes");
        }
        catch
        {
            File.Delete(staged);
            throw;
        }
    }

    private void CopyImage(SafeFileHandle source, SafeFileHandle target, long length)
    {
        if (Options.Reflink != ReflinkMode.Never)
        {
            var errno = LinuxFile.Reflink(target, source);
            if (errno == 0)
            {
                return;
            }

            if (Options.Reflink == ReflinkMode.Always)
            {
                throw new StoreException(
                    StoreErrorCode.FailedPrecondition,
                    $"reflink=always but the filesystem under '{Options.Root}' cannot reflink (errno {errno}); use reflink=auto or a filesystem such as xfs or btrfs");
            }
        }

        LinuxFile.SparseCopy(source, target, length);
    }

    private static void ThrowOnError(int errno, string call)
    {
        if (errno != 0)
        {
            throw LinuxFile.Error(errno, call);
        }
    }

    private void RemoveStaleStagingFiles()
    {
        foreach (var file in Directory.EnumerateFiles(_staging))
        {
            if (DateTime.UtcNow - File.GetLastWriteTimeUtc(file) > StaleStagingAge)
            {
                File.Delete(file);
            }
        }
    }

    private static IEnumerable<string> ListIds(string directory) =>
        Directory.EnumerateFiles(directory, "*.json")
            .Select(Path.GetFileNameWithoutExtension)
            .Where(VolumeIds.IsValidId)
            .Order(StringComparer.Ordinal)!;

    private FileVolumeRecord? ReadVolumeRecord(string id) => AtomicFile.ReadJson<FileVolumeRecord>(VolumeSidecar(id));

    private FileSnapshotRecord? ReadSnapshotRecord(string id) => AtomicFile.ReadJson<FileSnapshotRecord>(SnapshotSidecar(id));

    // Every caller validated the ID with VolumeIds first: no separators, no "..", bounded length.
    private string VolumeImage(string id) => Path.Combine(_volumes, id + ".img");

    private string VolumeSidecar(string id) => Path.Combine(_volumes, id + ".json");

    private string PublicationsRecord(string id) => Path.Combine(_publications, id + ".json");

    private string SnapshotImage(string id) => Path.Combine(_snapshots, id + ".img");

    private string SnapshotSidecar(string id) => Path.Combine(_snapshots, id + ".json");
}

/// <summary>The JSON sidecar of a file-store volume.</summary>
internal sealed record FileVolumeRecord(int Format, string Id, string Name, long SizeBytes, DateTimeOffset CreatedUtc, VolumeSourceKind? SourceKind, string? SourceId)
{
    public VolumeSource? Source => SourceKind is { } kind && SourceId is not null ? new VolumeSource(kind, SourceId) : null;

    public VolumeInfo ToInfo() => new(Id, Name, SizeBytes, CreatedUtc, Source);
}

/// <summary>The JSON sidecar of a file-store snapshot.</summary>
internal sealed record FileSnapshotRecord(int Format, string Id, string Name, string SourceVolumeId, long SizeBytes, DateTimeOffset CreatedUtc)
{
    public SnapshotInfo ToInfo() => new(Id, Name, SourceVolumeId, SizeBytes, CreatedUtc, ReadyToUse: true);
}

/// <summary>The nodes a file-store volume is published to (kept apart from the volume sidecar).</summary>
internal sealed record FilePublicationsRecord(int Format, VolumePublication[] Nodes);
