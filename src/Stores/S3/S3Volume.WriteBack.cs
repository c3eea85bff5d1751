using System.Buffers;
using UblkCsi.Engine;
using UblkCsi.Stores.Internal;

namespace UblkCsi.Stores.S3;

/// <summary>Write-back half of <see cref="S3Volume"/>: uploads, flush, manifest commits.</summary>
internal sealed partial class S3Volume
{
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

            var candidates = new List<(long LastUse, long Index)>();
            for (long i = 0; i < _states.Length; i++)
            {
                if (_states[i] is { } s && (s.Dirty || s.Uploading))
                {
                    candidates.Add((s.Uploading ? long.MinValue : s.LastUse, i));
                }
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

    /// <summary>Uploads every chunk dirty at the call and then writes the manifest naming them.</summary>
    private async Task FlushAllAsync()
    {
        try
        {
            List<Task> uploads = [];
            lock (_gate)
            {
                for (long i = 0; i < _states.Length; i++)
                {
                    if (_states[i] is { } s && (s.Dirty || s.Uploading))
                    {
                        uploads.Add(EnsureUploadedAsync(i));
                    }
                }
            }

            await Task.WhenAll(uploads).ConfigureAwait(false);
            await WriteManifestIfChangedAsync().ConfigureAwait(false);
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

    // Called under _gate with a dirty, idle chunk.
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
                    var old = _entries[index];
                    if (old != entry)
                    {
                        _entries[index] = entry;
                        _manifestDirty = true;

                        // A version of ours that no manifest ever named cannot be referenced by anyone.
                        if (old != 0 && old != _durable[index] && IsOwn(old))
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
            }

            throw;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
            _uploadSlots.Release();
        }
    }

    private async Task WriteManifestIfChangedAsync()
    {
        await _manifestLock.WaitAsync().ConfigureAwait(false);
        try
        {
            ulong[] entries;
            ulong floor;
            lock (_gate)
            {
                if (!_manifestDirty)
                {
                    return;
                }

                _manifestDirty = false;
                entries = (ulong[])_entries.Clone();
                floor = _inFlightVersions.Count > 0 ? _inFlightVersions.Min() : _nextVersion;
            }

            try
            {
                await WriteManifestAsync(entries, floor).ConfigureAwait(false);
            }
            catch
            {
                lock (_gate)
                {
                    _manifestDirty = true;
                }

                throw;
            }

            var superseded = new List<string>();
            lock (_gate)
            {
                for (long i = 0; i < entries.Length; i++)
                {
                    var old = _durable[i];
                    if (old != 0 && old != entries[i] && IsOwn(old))
                    {
                        superseded.Add(_template.ChunkKey(i, old)!);
                    }
                }

                _durable = entries;

                // Chunks whose cached bytes are exactly what the bucket now names lose their mark.
                for (long i = 0; i < entries.Length; i++)
                {
                    if (_states[i] is { Marked: true, Dirty: false, Uploading: false } state && _entries[i] == entries[i])
                    {
                        _journal?.Mark(i, unflushed: false);
                        state.Marked = false;
                    }
                }
            }

            // Listed after the manifest write: a snapshot racing with us has put its marker first
            // and read our new manifest, or its marker shows up here and we keep the old versions
            // for the garbage collector.
            if (superseded.Count > 0 && (await _bucket.ListAsync(S3Keys.RefPrefix(_ownUuid), CancellationToken.None).ConfigureAwait(false)).Count == 0)
            {
                await DeleteQuietlyAsync(superseded).ConfigureAwait(false);
            }
        }
        finally
        {
            _manifestLock.Release();
        }
    }

    private async Task WriteManifestAsync(ulong[] entries, ulong floor)
    {
        var key = S3Keys.Volume(VolumeId);
        var current = await _store.ReadManifestAsync(key, CancellationToken.None).ConfigureAwait(false);
        if (current is null || current.Uuid != _ownUuid)
        {
            throw new BlockBackendException(BlockBackendException.EIO, $"volume '{VolumeId}' was deleted or recreated while open; its writes cannot be committed");
        }

        // The controller may have expanded the volume while it is attached: keep the larger size.
        var generation = current.WriterGeneration + 1;
        var manifest = new S3Manifest
        {
            WriterGeneration = generation,
            Id = _template.Id,
            Name = _template.Name,
            SizeBytes = Math.Max(current.SizeBytes, Info.SizeBytes),
            ChunkSize = _chunkSize,
            CreatedUtc = _template.CreatedUtc,
            SourceKind = _template.SourceKind,
            SourceId = _template.SourceId,
            Uuid = _ownUuid,
            Lineage = _template.Lineage,
            NextVersion = floor,
        };
        manifest.WriteEntries(entries);
        _journal?.SetPending(generation);
        await _store.WriteManifestAsync(key, manifest, CancellationToken.None).ConfigureAwait(false);
        _journal?.SetCommitted(generation);
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
