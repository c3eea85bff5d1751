using System.Buffers;
using UblkCsi.Engine;
using UblkCsi.Stores.Internal;

namespace UblkCsi.Stores.S3;

/// <summary>Write-back half of <see cref="S3Volume"/>: uploads, flush, journal commits, compaction, fencing.</summary>
internal sealed partial class S3Volume
{
    /// <summary>Journals a writer lets pile up before it folds them into a new base in the background.</summary>
    internal const int CompactAfterJournals = 64;

    private ulong _journalSeq; // last journal committed by this generation (0: only the base)
    private ulong _baseSeq; // journal sequence the newest base covers
    private ulong _committedFloor; // NextVersion of the last commit
    private bool _commitUncertain; // a journal put failed and may still have landed: versions it named stay
    private long[]? _committing; // sorted chunk indexes of the journal being put (guarded by _gate)
    private int _compacting;
    private Task? _compaction;
    private Task? _cleanup;

    /// <summary>Writes back the dirty chunks touched longest ago until dirty bytes are under a quarter of the limit.</summary>
    private async Task BackgroundWriteBackAsync()
    {
        try
        {
            while (true)
            {
                var batch = PickDirtyChunks(_dirtyLimit / 4);
                if (batch.Count == 0)
                {
                    return;
                }

                await Task.WhenAll(batch).ConfigureAwait(false);
                ClearWriteBackFailure();
            }
        }
        catch (Exception e)
        {
            // Failed chunks stay dirty; the next flush retries and reports the error to its caller.
            // Nobody waits for this write-back, so it is logged and surfaced as the volume's condition.
            RecordWriteBackFailure(e);
        }
        finally
        {
            Volatile.Write(ref _backgroundWriteBack, 0);
        }
    }

    private void RecordWriteBackFailure(Exception e)
    {
        var message = $"background write-back to the bucket failed: {e.Message}";
        if (Interlocked.Exchange(ref _writeBackFailure, message) == null && Logger is { } logger)
        {
            StoresLog.S3WriteBackFailed(logger, VolumeId, e.Message, e);
        }
    }

    private void ClearWriteBackFailure()
    {
        if (Interlocked.Exchange(ref _writeBackFailure, null) != null && Logger is { } logger)
        {
            StoresLog.S3WriteBackRecovered(logger, VolumeId);
        }
    }

    private async Task WaitForDirtyRoomAsync()
    {
        while (true)
        {
            var batch = PickDirtyChunks(_dirtyLimit);
            if (batch.Count == 0)
            {
                return;
            }

            await Task.WhenAll(batch).ConfigureAwait(false);
        }
    }

    /// <summary>Starts uploads of the least recently used dirty chunks; empty when dirty bytes are at or below the target.</summary>
    private List<Task> PickDirtyChunks(long target)
    {
        var tasks = new List<Task>();
        lock (_gate)
        {
            if (_dirtyBytes <= target)
            {
                return tasks;
            }

            var candidates = new List<(long LastUse, long Index)>(_dirtyChunks.Count);
            foreach (var i in _dirtyChunks)
            {
                var s = _states[i]!;
                candidates.Add((s.Uploading ? long.MinValue : s.LastUse, i));
            }

            candidates.Sort();
            var excess = _dirtyBytes - target;
            foreach (var (_, index) in candidates)
            {
                var state = _states[index]!;
                tasks.Add(state.Uploading ? state.UploadTask! : StartUpload(index, state));
                excess -= ChunkLength(index);
                if (excess <= 0 || tasks.Count >= 2 * _uploadSlots.CurrentCount + 1)
                {
                    break;
                }
            }
        }

        return tasks;
    }

    /// <summary>Uploads every chunk dirty at the call and then commits a journal naming them.</summary>
    private async Task FlushAllAsync()
    {
        try
        {
            if (Volatile.Read(ref _fenced) is { } fenced)
            {
                throw new BlockBackendException(BlockBackendException.EIO, fenced);
            }

            List<long> dirty;
            lock (_gate)
            {
                dirty = [.. _dirtyChunks];
            }

            List<Task> uploads = new(dirty.Count);
            foreach (var index in dirty)
            {
                uploads.Add(EnsureUploadedAsync(index));
            }

            await Task.WhenAll(uploads).ConfigureAwait(false);
            await CommitAsync().ConfigureAwait(false);
        }
        catch (Exception e)
        {
            throw IoError(e, "flush");
        }
    }

    /// <summary>
    /// Returns when an upload that started after this call has captured the chunk, or the chunk
    /// turned out clean with no upload running (its last upload captured every earlier write).
    /// </summary>
    private async Task EnsureUploadedAsync(long index)
    {
        var ours = false;
        while (true)
        {
            Task running;
            lock (_gate)
            {
                var state = _states[index]!;
                if (state.Uploading)
                {
                    running = state.UploadTask!;
                }
                else if (state.Dirty && !ours)
                {
                    running = StartUpload(index, state);
                    ours = true;
                }
                else
                {
                    return;
                }
            }

            await running.ConfigureAwait(false);
            if (ours)
            {
                return;
            }
        }
    }

    // Called under _gate with a dirty, idle chunk (already in the dirty set).
    private Task StartUpload(long index, ChunkState state)
    {
        state.Uploading = true;
        state.UploadTask = Task.Run(() => UploadAsync(index));
        return state.UploadTask;
    }

    private async Task UploadAsync(long index)
    {
        var length = ChunkLength(index);
        await _uploadSlots.WaitAsync().ConfigureAwait(false);
        var buffer = ArrayPool<byte>.Shared.Rent(length);
        ulong version = 0;
        var state = _states[index]!;
        try
        {
            int epoch;
            lock (_gate)
            {
                if (Volatile.Read(ref _fenced) is { } fenced)
                {
                    throw new BlockBackendException(BlockBackendException.EIO, fenced);
                }

                // Writes from here on re-dirty the chunk and are uploaded next time.
                epoch = state.Epoch;
                if (state.Dirty)
                {
                    state.Dirty = false;
                    _dirtyBytes -= length;
                }

                state.ActiveIo++;
            }

            try
            {
                ReadCache(index * _chunkSize, buffer.AsSpan(0, length));
            }
            finally
            {
                lock (_gate)
                {
                    state.ActiveIo--;
                }
            }

            ulong entry = 0;
            if (buffer.AsSpan(0, length).ContainsAnyExcept((byte)0))
            {
                lock (_gate)
                {
                    if (_nextVersion >= _versionLimit)
                    {
                        throw new BlockBackendException(BlockBackendException.EIO, $"volume '{VolumeId}': this open used up its chunk versions; detach and attach it again");
                    }

                    version = _nextVersion++;
                    _inFlightVersions.Add(version);
                }

                var started = UploadStarted();
                await _bucket.PutAsync(S3Keys.Chunk(_ownUuid, index, version), buffer.AsMemory(0, length), CancellationToken.None).ConfigureAwait(false);
                CountUpload(started);
                entry = S3Manifest.Entry(_ownLineage, version);
            }

            string? garbage = null;
            lock (_gate)
            {
                _inFlightVersions.Remove(version);
                if (state.Epoch == epoch)
                {
                    // Touched even when unchanged: the commit clears the chunk's journal mark.
                    _changed.Add(index);
                    var old = _entries[index];
                    if (old != entry)
                    {
                        _entries[index] = entry;

                        // A version of ours that no journal ever named (committed or being put) cannot be referenced by anyone.
                        if (old != 0 && old != _durable[index] && IsOwn(old) && !_commitUncertain
                            && (_committing is null || Array.BinarySearch(_committing, index) < 0))
                        {
                            garbage = _template.ChunkKey(index, old);
                        }
                    }
                }
                else if (entry != 0)
                {
                    garbage = _template.ChunkKey(index, entry); // discarded while uploading
                }

                state.Uploading = false;
                state.UploadTask = null;
                UpdateDirtySet(index, state);
            }

            if (garbage is not null)
            {
                await DeleteQuietlyAsync([garbage]).ConfigureAwait(false);
            }
        }
        catch
        {
            CountUploadFailure();
            lock (_gate)
            {
                _inFlightVersions.Remove(version);
                if (!state.Dirty)
                {
                    state.Dirty = true;
                    _dirtyBytes += length;
                }

                state.Uploading = false;
                state.UploadTask = null;
                UpdateDirtySet(index, state);
            }

            throw;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
            _uploadSlots.Release();
        }
    }

    /// <summary>
    /// Commits the map entries touched since the last commit as the next journal object of this
    /// generation, then checks the lease: only a writer that is still the newest acknowledges.
    /// </summary>
    private async Task CommitAsync()
    {
        await _manifestLock.WaitAsync().ConfigureAwait(false);
        try
        {
            long[] indexes;
            ulong[] entries;
            ulong floor;
            lock (_gate)
            {
                if (_changed.Count == 0)
                {
                    return;
                }

                indexes = [.. _changed];
                Array.Sort(indexes);
                _committing = indexes;
                entries = new ulong[indexes.Length];
                for (var k = 0; k < indexes.Length; k++)
                {
                    entries[k] = _entries[indexes[k]];
                }

                floor = _inFlightVersions.Count > 0 ? _inFlightVersions.Min() : _nextVersion;
            }

            // A failed put is retried under the same sequence with a superset of the entries, so
            // the journal has no gaps and a landed-but-unacknowledged object is simply replaced.
            var seq = _journalSeq + 1;
            var delta = new S3JournalDelta
            {
                Generation = _generation,
                Seq = seq,
                SizeBytes = Info.SizeBytes,
                NextVersion = floor,
                Indexes = indexes,
                Entries = entries,
            };
            _journal?.SetPending(_generation, seq);
            try
            {
                await _bucket.PutAsync(S3Keys.Journal(VolumeId, _generation, seq), delta.Serialize(), CancellationToken.None).ConfigureAwait(false);
                if (await S3WriterLog.CheckLeaseAsync(_bucket, VolumeId, _generation, CancellationToken.None).ConfigureAwait(false) is { } fenced)
                {
                    Fence(fenced);
                    throw new BlockBackendException(BlockBackendException.EIO, fenced);
                }
            }
            catch
            {
                lock (_gate)
                {
                    _commitUncertain = true;
                    _committing = null;
                }

                throw;
            }

            _journal?.SetCommitted(_generation, seq);
            _journalSeq = seq;
            _committedFloor = floor;

            var superseded = new List<string>();
            lock (_gate)
            {
                _committing = null; // from here on _durable names what the journal named
                for (var k = 0; k < indexes.Length; k++)
                {
                    var index = indexes[k];
                    var old = _durable[index];
                    if (old != 0 && old != entries[k] && IsOwn(old))
                    {
                        superseded.Add(_template.ChunkKey(index, old)!);
                    }

                    _durable[index] = entries[k];
                    if (_entries[index] == entries[k])
                    {
                        _changed.Remove(index);

                        // The chunk's cached bytes are exactly what the bucket now names: it loses its mark.
                        if (_states[index] is { Marked: true, Dirty: false, Uploading: false } state)
                        {
                            _journal?.Mark(index, unflushed: false);
                            state.Marked = false;
                        }
                    }
                }
            }

            // Listed after the commit: a snapshot racing with us has put its marker first and read
            // our new journal, or its marker shows up here and we keep the old versions for the
            // garbage collector. A newer generation read our map only after this commit (its lease
            // came after our check), so it never names a superseded version.
            if (superseded.Count > 0 && (await _bucket.ListAsync(S3Keys.RefPrefix(_ownUuid), CancellationToken.None).ConfigureAwait(false)).Count == 0)
            {
                await DeleteQuietlyAsync(superseded).ConfigureAwait(false);
            }

            if (_journalSeq - _baseSeq >= CompactAfterJournals && Interlocked.CompareExchange(ref _compacting, 1, 0) == 0)
            {
                _compaction = Task.Run(CompactAsync);
            }
        }
        finally
        {
            _manifestLock.Release();
        }
    }

    /// <summary>Writes this generation's first base: the map as read after taking the lease.</summary>
    internal async Task CommitBaseAsync(CancellationToken cancellationToken)
    {
        ulong[] entries;
        ulong floor;
        lock (_gate)
        {
            entries = (ulong[])_durable.Clone();
            floor = _nextVersion;
        }

        _committedFloor = floor;
        _journal?.SetPending(_generation, 0);
        await _store.WriteManifestAsync(S3Keys.WriterBase(VolumeId, _generation), BuildBase(entries, 0, floor), cancellationToken).ConfigureAwait(false);
        _journal?.SetCommitted(_generation, 0);
    }

    /// <summary>
    /// In the background after a read-write open: removes the objects of older (fenced or dead)
    /// generations and the chunk versions no map names any more.
    /// </summary>
    internal void StartCleanupOfOlderGenerations()
    {
        lock (_gate)
        {
            _cleanup = Task.Run(async () =>
            {
                try
                {
                    await S3WriterLog.RemoveOlderGenerationsAsync(_bucket, VolumeId, _generation, CancellationToken.None).ConfigureAwait(false);
                    await _store.CollectGarbageAsync(_template.Lineage[_ownLineage], CancellationToken.None).ConfigureAwait(false);
                }
                catch (Exception e) when (e is StoreException or InvalidDataException)
                {
                    // Left for the garbage collection that runs when the volume or a snapshot is deleted.
                }
            });
        }
    }

    /// <summary>Folds the committed journals into a new base, then deletes the journals it covers.</summary>
    private async Task CompactAsync()
    {
        try
        {
            ulong[] entries;
            ulong seq, floor, covered;
            await _manifestLock.WaitAsync().ConfigureAwait(false);
            try
            {
                // _durable changes only under the manifest lock: no flush is blocked for longer than the copy.
                entries = (ulong[])_durable.Clone();
                seq = _journalSeq;
                floor = _committedFloor;
                covered = _baseSeq;
            }
            finally
            {
                _manifestLock.Release();
            }

            if (Volatile.Read(ref _fenced) is not null)
            {
                return;
            }

            await _store.WriteManifestAsync(S3Keys.WriterBase(VolumeId, _generation), BuildBase(entries, seq, floor), CancellationToken.None).ConfigureAwait(false);
            _baseSeq = seq;
            var obsolete = new List<string>();
            for (var s = covered + 1; s <= seq; s++)
            {
                obsolete.Add(S3Keys.Journal(VolumeId, _generation, s));
            }

            await DeleteQuietlyAsync(obsolete).ConfigureAwait(false);
        }
        catch (Exception e) when (e is StoreException or IOException)
        {
            if (Logger is { } logger)
            {
                StoresLog.S3CompactionFailed(logger, VolumeId, e.Message, e);
            }
        }
        finally
        {
            Volatile.Write(ref _compacting, 0);
        }
    }

    private S3Manifest BuildBase(ulong[] entries, ulong seq, ulong floor)
    {
        var manifest = S3WriterLog.Clone(_template);
        manifest.SizeBytes = Info.SizeBytes;
        manifest.NextVersion = floor;
        manifest.WriterGeneration = _generation;
        manifest.JournalSeq = seq;
        manifest.WriteEntries(entries);
        return manifest;
    }

    private void Fence(string reason)
    {
        if (Interlocked.CompareExchange(ref _fenced, reason, null) is null && Logger is { } logger)
        {
            StoresLog.S3WriterFenced(logger, VolumeId, reason);
        }
    }

    private async Task DeleteQuietlyAsync(IReadOnlyCollection<string> keys)
    {
        try
        {
            await _bucket.DeleteAsync(keys, CancellationToken.None).ConfigureAwait(false);
        }
        catch (StoreException)
        {
            // Left for the garbage collector that runs when the volume or a snapshot is deleted.
        }
    }
}
