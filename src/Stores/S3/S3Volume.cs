using Microsoft.Win32.SafeHandles;
using UblkCsi.Engine;
using UblkCsi.Stores.Internal;

namespace UblkCsi.Stores.S3;

/// <summary>
/// An open s3-store volume: a write-back cache in one sparse local file, in front of the chunk
/// objects. Reads and writes of cached chunks complete synchronously with a pread/pwrite on the
/// cache file (page cache speed, no allocation). A chunk not yet cached is downloaded once (absent
/// chunks are zeros and need no download), sequential reads fetch the next chunks ahead, dirty
/// chunks are uploaded as new immutable versions in the background when dirty bytes pass half the
/// limit, and writers wait when they pass the limit. FLUSH uploads every chunk dirty at its start
/// and then writes a journal object naming the new versions: only then is the data durable.
/// </summary>
/// <remarks>
/// Nothing a request does scales with the volume's size: cached chunks sit in an LRU list (eviction
/// takes victims from its head, no scan), dirty chunks in a set (FLUSH visits only them), and a FLUSH
/// commits only the map entries that changed since the last one (<see cref="S3WriterLog"/>).
/// </remarks>
internal sealed partial class S3Volume : StoreVolume
{
    private readonly S3Store _store;
    private readonly S3Bucket _bucket;
    private readonly S3Manifest _template;
    private readonly int _chunkSize;
    private readonly int _ownLineage;
    private readonly string _ownUuid;
    private readonly long _cacheLimit;
    private readonly long _dirtyLimit;
    private readonly int _readAhead;
    private readonly SemaphoreSlim _uploadSlots;
    private readonly SemaphoreSlim _manifestLock = new(1, 1);
    private readonly SafeFileHandle _cache;
    private readonly string _cachePath;
    private readonly CacheJournal? _journal; // null for read-only opens: they never hold unflushed data
    private readonly ulong _generation; // the writer lease (0 for read-only opens)
    private readonly ulong _versionLimit; // first version of the next generation: never uploaded by this one

    // Everything below is guarded by _gate (one lock: sections are a few instructions long).
    private readonly object _gate = new();
    private readonly ulong[] _entries;
    private readonly ChunkState?[] _states;
    private readonly HashSet<ulong> _inFlightVersions = [];
    private readonly HashSet<long> _dirtyChunks = []; // chunks Dirty or Uploading
    private readonly HashSet<long> _changed = []; // map entries touched since the last committed journal
    private readonly LinkedList<long> _lru = new(); // loaded chunks, least recently used first
    private readonly ulong[] _durable;
    private ulong _nextVersion;
    private long _dirtyBytes;
    private long _cachedBytes;
    private long _useClock;
    private long _lastReadEnd = -1;
    private int _backgroundWriteBack;
    private string? _writeBackFailure;
    private string? _fenced; // why this writer lost its lease: every later write and flush fails

    /// <summary>Abnormal once a newer writer fenced this one, or while background write-back to the bucket fails.</summary>
    public override VolumeCondition Condition =>
        Volatile.Read(ref _fenced) is { } fenced ? new VolumeCondition(true, fenced)
        : Volatile.Read(ref _writeBackFailure) is { } failure ? new VolumeCondition(true, failure)
        : VolumeCondition.Healthy;
    private bool _disposed;

    private S3Volume(S3Store store, S3Manifest manifest, bool readOnly, ulong generation, SafeFileHandle cache, string cachePath, CacheJournal? journal, List<long> adoptedDirty)
        : base(manifest.Id, new BlockBackendInfo(
            manifest.SizeBytes,
            LogicalBlockSize: StoreLimits.IoAlignment,
            PhysicalBlockSize: 4096,
            BlockBackendFeatures.VolatileCache | BlockBackendFeatures.Fua | BlockBackendFeatures.Discard | BlockBackendFeatures.WriteZeroes,
            DiscardGranularity: 4096), readOnly)
    {
        _store = store;
        _bucket = store.Bucket;
        _template = manifest;
        _chunkSize = manifest.ChunkSize;
        _ownLineage = manifest.Lineage.Count - 1;
        _ownUuid = manifest.Uuid!;
        _entries = manifest.ReadEntries();
        _durable = (ulong[])_entries.Clone();
        _states = new ChunkState?[_entries.Length];
        // Never reuse a version the manifest names: after a crash NextVersion can sit below a
        // version that completed while an older upload was still in flight, and a snapshot may
        // share that object, which must stay immutable.
        // Versions carry the generation in their top bits: a fenced older writer still uploading can
        // never put an object key this generation's map names.
        _generation = generation;
        _versionLimit = (generation + 1) << S3WriterLog.VersionShift;
        _nextVersion = Math.Max(Math.Max(1, manifest.NextVersion), generation << S3WriterLog.VersionShift);
        foreach (var entry in _entries)
        {
            if (entry != 0 && IsOwn(entry))
            {
                _nextVersion = Math.Max(_nextVersion, (entry & S3Manifest.VersionMask) + 1);
            }
        }
        var options = store.Options;
        _cacheLimit = Math.Max(options.CacheBytes, options.DirtyLimitBytes + 2L * _chunkSize);
        _dirtyLimit = Math.Max(options.DirtyLimitBytes, 2L * _chunkSize);
        _readAhead = options.ReadAheadChunks;
        _uploadSlots = new SemaphoreSlim(options.UploadConcurrency, options.UploadConcurrency);
        _cache = cache;
        _cachePath = cachePath;
        _journal = journal;
        foreach (var index in adoptedDirty)
        {
            // The predecessor's unflushed writes: cached, dirty and still marked in the journal.
            var state = State(index);
            state.Loaded = state.Dirty = state.Marked = true;
            _dirtyChunks.Add(index);
            Touch(index, state);
            _dirtyBytes += ChunkLength(index);
            _cachedBytes += ChunkLength(index);
        }
    }

    /// <summary>Opens a volume for reading: no lease, a private throwaway cache.</summary>
    public static S3Volume OpenReader(S3Store store, S3Manifest state)
    {
        var directory = CacheDirectory(store, state);

        // Readers leave a crashed writer's cache alone.
        RemoveAbandonedReaderCaches(directory, state.Uuid!);
        var path = Path.Combine(directory, $"{state.Uuid}.reader-{Guid.NewGuid():N}.cache");
        var readerCache = File.OpenHandle(path, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None);
        try
        {
            RandomAccess.SetLength(readerCache, state.SizeBytes);
            return new S3Volume(store, state, readOnly: true, 0, readerCache, path, null, []);
        }
        catch
        {
            readerCache.Dispose();
            File.Delete(path);
            throw;
        }
    }

    /// <summary>
    /// Opens a volume for writing: locks the node-local cache (a second writer on this node is refused
    /// before it could fence the first), takes a new writer generation, reads the state after the lease,
    /// adopts a predecessor's cache when safe, and commits this generation's base.
    /// </summary>
    public static async Task<S3Volume> OpenWriterAsync(S3Store store, S3Manifest control, CancellationToken cancellationToken)
    {
        var directory = CacheDirectory(store, control);
        var (cache, cachePath) = CacheJournal.LockCache(directory, control);
        S3Volume? volume = null;
        try
        {
            var generation = await S3WriterLog.TakeLeaseAsync(store.Bucket, control, cancellationToken).ConfigureAwait(false);

            // Read after the lease is in: whatever an older writer acknowledged is in this state.
            var state = await S3WriterLog.ReadStateAsync(store, control.Id, cancellationToken).ConfigureAwait(false);
            if (state is null || state.Uuid != control.Uuid)
            {
                throw new StoreNotFoundException(StoreObjectKind.Volume, control.Id);
            }

            var (journal, dirty) = CacheJournal.OpenForWriter(directory, cache, state);
            try
            {
                volume = new S3Volume(store, state, readOnly: false, generation, cache, cachePath, journal, dirty);
            }
            catch
            {
                journal.Dispose();
                throw;
            }
        }
        catch
        {
            cache.Dispose();
            throw;
        }

        try
        {
            await volume.CommitBaseAsync(cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            volume.Abandon(); // the cache and journal stay for the next opener to adopt
            throw;
        }

        volume.StartCleanupOfOlderGenerations();
        return volume;
    }

    private static string CacheDirectory(S3Store store, S3Manifest manifest)
    {
        if (manifest.Uuid is null || manifest.Lineage.Count == 0 || manifest.Lineage[^1].Uuid != manifest.Uuid)
        {
            throw new InvalidDataException($"manifest of volume '{manifest.Id}' has no own incarnation");
        }

        try
        {
            return Directory.CreateDirectory(store.Options.CacheDirectory).FullName;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new StoreParameterException("cacheDir", $"cannot use '{store.Options.CacheDirectory}' for the local cache: {e.Message}");
        }
    }

    /// <summary>Bytes written but not yet uploaded (for tests and stats).</summary>
    public long DirtyBytes
    {
        get
        {
            lock (_gate)
            {
                return _dirtyBytes;
            }
        }
    }

    /// <summary>True when chunk <paramref name="index"/> is in the local cache (tests observe read-ahead with it).</summary>
    public bool IsCached(long index)
    {
        lock (_gate)
        {
            return _states[index] is { Loaded: true };
        }
    }

    public override async ValueTask DisposeAsync()
    {
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
        }

        var flushed = false;
        try
        {
            if (!IsReadOnly)
            {
                // Flush so the cache can go; if that fails the files stay for the next opener to adopt.
                await FlushAllAsync().ConfigureAwait(false);
            }

            flushed = true;
        }
        catch (BlockBackendException) when (Volatile.Read(ref _fenced) is not null)
        {
            // A fenced writer's unflushed data is lost by design (the newer writer won): nothing to keep.
        }
        finally
        {
            await DrainBackgroundWorkAsync().ConfigureAwait(false);
            _cache.Dispose();
            _journal?.Dispose();
            if (flushed || Volatile.Read(ref _fenced) is not null)
            {
                File.Delete(_cachePath);
                if (_journal is not null)
                {
                    File.Delete(_journal.StatePath);
                }
            }
        }
    }

    /// <summary>Drops the volume as a killed process would: no flush, cache files left behind.</summary>
    internal void Abandon()
    {
        lock (_gate)
        {
            _disposed = true;
        }

        _cache.Dispose();
        _journal?.Dispose();
    }

    protected override ValueTask ReadCoreAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        MaybeReadAhead(offset, buffer.Length);
        var done = 0;
        while (done < buffer.Length)
        {
            var position = offset + done;
            var index = position / _chunkSize;
            var length = (int)Math.Min(buffer.Length - done, (index + 1) * _chunkSize - position);
            if (TryAcquire(index, fullOverwrite: false) is { } pending)
            {
                CountCacheMiss();
                return new ValueTask(ReadSlowAsync(pending, offset, buffer, done));
            }

            try
            {
                ReadCache(position, buffer.Span.Slice(done, length));
            }
            catch (Exception e)
            {
                return ValueTask.FromException(IoError(e, "read"));
            }
            finally
            {
                Release(index, wrote: false);
            }

            CountCacheHit();
            done += length;
        }

        return default;
    }

    protected override ValueTask WriteCoreAsync(long offset, ReadOnlyMemory<byte> data, bool fua, CancellationToken cancellationToken)
    {
        if (Volatile.Read(ref _fenced) is { } fenced)
        {
            return ValueTask.FromException(new BlockBackendException(BlockBackendException.EIO, fenced));
        }

        var done = 0;
        while (done < data.Length)
        {
            var position = offset + done;
            var index = position / _chunkSize;
            var length = (int)Math.Min(data.Length - done, (index + 1) * _chunkSize - position);
            var full = position == index * _chunkSize && length == ChunkLength(index);
            if (TryAcquire(index, full) is { } pending)
            {
                return new ValueTask(WriteSlowAsync(pending, offset, data, done, fua));
            }

            var wrote = false;
            try
            {
                RandomAccess.Write(_cache, data.Span.Slice(done, length), position);
                wrote = true;
            }
            catch (Exception e)
            {
                return ValueTask.FromException(IoError(e, "write"));
            }
            finally
            {
                Release(index, wrote);
            }

            done += length;
        }

        return AfterWrite(fua);
    }

    protected override ValueTask FlushCoreAsync(CancellationToken cancellationToken) => new(FlushAllAsync());

    protected override ValueTask DiscardCoreAsync(long offset, long length, CancellationToken cancellationToken) =>
        Volatile.Read(ref _fenced) is { } fenced ? ValueTask.FromException(new BlockBackendException(BlockBackendException.EIO, fenced)) : new(ZeroRangeAsync(offset, length));

    protected override ValueTask WriteZeroesCoreAsync(long offset, long length, CancellationToken cancellationToken) =>
        DiscardCoreAsync(offset, length, cancellationToken);

    private ValueTask AfterWrite(bool fua)
    {
        if (fua)
        {
            return new ValueTask(FlushAllAsync());
        }

        long dirty;
        lock (_gate)
        {
            dirty = _dirtyBytes;
        }

        if (dirty > _dirtyLimit / 2 && Interlocked.CompareExchange(ref _backgroundWriteBack, 1, 0) == 0)
        {
            _ = Task.Run(BackgroundWriteBackAsync);
        }

        return dirty > _dirtyLimit ? new ValueTask(WaitForDirtyRoomAsync()) : default;
    }

    private async Task ReadSlowAsync(Task pending, long offset, Memory<byte> buffer, int done)
    {
        try
        {
            while (done < buffer.Length)
            {
                await pending.ConfigureAwait(false);
                var position = offset + done;
                var index = position / _chunkSize;
                var length = (int)Math.Min(buffer.Length - done, (index + 1) * _chunkSize - position);
                if (TryAcquire(index, fullOverwrite: false) is { } next)
                {
                    CountCacheMiss();
                    pending = next;
                    continue;
                }

                try
                {
                    ReadCache(position, buffer.Span.Slice(done, length));
                }
                finally
                {
                    Release(index, wrote: false);
                }

                if (pending == Task.CompletedTask)
                {
                    CountCacheHit(); // this chunk needed no wait
                }

                done += length;
                pending = Task.CompletedTask;
            }
        }
        catch (Exception e)
        {
            throw IoError(e, "read");
        }
    }

    private async Task WriteSlowAsync(Task pending, long offset, ReadOnlyMemory<byte> data, int done, bool fua)
    {
        try
        {
            while (done < data.Length)
            {
                await pending.ConfigureAwait(false);
                var position = offset + done;
                var index = position / _chunkSize;
                var length = (int)Math.Min(data.Length - done, (index + 1) * _chunkSize - position);
                var full = position == index * _chunkSize && length == ChunkLength(index);
                if (TryAcquire(index, full) is { } next)
                {
                    pending = next;
                    continue;
                }

                var wrote = false;
                try
                {
                    RandomAccess.Write(_cache, data.Span.Slice(done, length), position);
                    wrote = true;
                }
                finally
                {
                    Release(index, wrote);
                }

                done += length;
                pending = Task.CompletedTask;
            }

            await AfterWrite(fua).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            throw IoError(e, "write");
        }
    }

    /// <summary>Discard and write-zeroes: whole chunks become absent, partial chunks get zeros written.</summary>
    private async Task ZeroRangeAsync(long offset, long length)
    {
        try
        {
            var end = offset + length;
            while (offset < end)
            {
                var index = offset / _chunkSize;
                var chunkStart = index * _chunkSize;
                var piece = Math.Min(end - offset, chunkStart + ChunkLength(index) - offset);
                if (offset == chunkStart && piece == ChunkLength(index))
                {
                    await DropChunkAsync(index).ConfigureAwait(false);
                }
                else
                {
                    for (long written = 0; written < piece;)
                    {
                        var n = (int)Math.Min(piece - written, ZeroBlock.Memory.Length);
                        await WriteCoreAsync(offset + written, ZeroBlock.Memory[..n], fua: false, CancellationToken.None).ConfigureAwait(false);
                        written += n;
                    }
                }

                offset += piece;
            }
        }
        catch (Exception e)
        {
            throw IoError(e, "discard");
        }
    }

    /// <summary>Makes a whole chunk absent: the map entry becomes 0 and the cached copy a hole.</summary>
    private async Task DropChunkAsync(long index)
    {
        while (true)
        {
            Task? loading;
            lock (_gate)
            {
                var state = State(index);
                loading = state.LoadTask;
                if (loading is null)
                {
                    if (_entries[index] != 0 || state.Dirty || state.Uploading)
                    {
                        _entries[index] = 0;
                        _changed.Add(index);
                        MarkUnflushed(index, state);
                    }

                    state.Epoch++; // an upload in flight must not put its version back
                    if (state.Dirty)
                    {
                        state.Dirty = false;
                        _dirtyBytes -= ChunkLength(index);
                        UpdateDirtySet(index, state);
                    }

                    if (!state.Loaded)
                    {
                        state.Loaded = true;
                        _cachedBytes += ChunkLength(index);
                    }

                    Touch(index, state);

                    var errno = LinuxFile.PunchHole(_cache, index * _chunkSize, ChunkLength(index));
                    if (errno != 0)
                    {
                        RandomAccess.Write(_cache, ZeroBlock.Span[..Math.Min(ZeroBlock.Span.Length, ChunkLength(index))], index * _chunkSize);
                        for (var o = ZeroBlock.Span.Length; o < ChunkLength(index); o += ZeroBlock.Span.Length)
                        {
                            RandomAccess.Write(_cache, ZeroBlock.Span[..Math.Min(ZeroBlock.Span.Length, ChunkLength(index) - o)], index * _chunkSize + o);
                        }
                    }

                    return;
                }
            }

            await loading.ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Pins a chunk for I/O. Returns null when pinned (cached, or needing no download), else a task
    /// to await before trying again (a download in progress or just started).
    /// </summary>
    private Task? TryAcquire(long index, bool fullOverwrite)
    {
        lock (_gate)
        {
            var state = State(index);
            if (!state.Loaded)
            {
                if (state.LoadTask is { } loading)
                {
                    return loading;
                }

                var entry = _entries[index];
                if (entry != 0 && !fullOverwrite)
                {
                    return state.LoadTask = StartLoad(index, entry);
                }

                // Absent chunks are holes in the cache file; fully overwritten ones need no old data.
                state.Loaded = true;
                _cachedBytes += ChunkLength(index);
            }

            state.ActiveIo++;
            Touch(index, state);
            return null;
        }
    }

    private void Release(long index, bool wrote)
    {
        lock (_gate)
        {
            var state = _states[index]!;
            state.ActiveIo--;
            if (wrote && !state.Dirty)
            {
                state.Dirty = true;
                _dirtyChunks.Add(index);
                _dirtyBytes += ChunkLength(index);
                MarkUnflushed(index, state);
            }
        }
    }

    private void ReadCache(long position, Span<byte> destination)
    {
        while (destination.Length > 0)
        {
            var n = RandomAccess.Read(_cache, destination, position);
            if (n == 0)
            {
                destination.Clear();
                return;
            }

            destination = destination[n..];
            position += n;
        }
    }

    // Under _gate, before the write that dirtied the chunk completes: a successor process must
    // know this chunk's cached bytes are newer than the bucket's.
    private void MarkUnflushed(long index, ChunkState state)
    {
        if (!state.Marked && _journal is not null)
        {
            _journal.Mark(index, unflushed: true);
            state.Marked = true;
        }
    }

    // Under _gate: the chunk becomes the most recently used (no allocation after its first load).
    private void Touch(long index, ChunkState state)
    {
        state.LastUse = ++_useClock;
        var node = state.LruNode ??= new LinkedListNode<long>(index);
        if (node.List is not null)
        {
            _lru.Remove(node);
        }

        _lru.AddLast(node);
    }

    // Under _gate, after Dirty or Uploading changed.
    private void UpdateDirtySet(long index, ChunkState state)
    {
        if (state.Dirty || state.Uploading)
        {
            _dirtyChunks.Add(index);
        }
        else
        {
            _dirtyChunks.Remove(index);
        }
    }

    private bool IsOwn(ulong entry) => (int)(entry >> S3Manifest.VersionBits) == _ownLineage;

    private int ChunkLength(long index) => (int)Math.Min(_chunkSize, Info.SizeBytes - index * _chunkSize);

    private ChunkState State(long index) => _states[index] ??= new ChunkState();

    private BlockBackendException IoError(Exception e, string operation) => e switch
    {
        BlockBackendException b => b,
        IOException when e.HResult is > 0 and < 4096 => new BlockBackendException(e.HResult, $"volume '{VolumeId}': {operation} failed: {e.Message}", e),
        _ => new BlockBackendException(BlockBackendException.EIO, $"volume '{VolumeId}': {operation} failed: {e.Message}", e),
    };

    private static void RemoveAbandonedReaderCaches(string directory, string uuid)
    {
        foreach (var file in Directory.EnumerateFiles(directory, uuid + ".reader-*.cache"))
        {
            try
            {
                // Succeeds only when no live process holds the file's lock.
                using (File.Open(file, FileMode.Open, FileAccess.ReadWrite, FileShare.None))
                {
                }

                File.Delete(file);
            }
            catch (IOException)
            {
            }
        }
    }

    /// <summary>Cache and upload state of one chunk; every field is guarded by the volume's gate.</summary>
    private sealed class ChunkState
    {
        public bool Loaded;
        public bool Dirty;
        public bool Uploading;
        public bool Marked; // set in the cache journal: holds content no committed manifest names
        public int ActiveIo;
        public int Epoch;
        public long LastUse;
        public LinkedListNode<long>? LruNode; // in the volume's LRU list while Loaded
        public Task? LoadTask; // a download, or an eviction punching the chunk's hole
        public Task? UploadTask;
    }
}
