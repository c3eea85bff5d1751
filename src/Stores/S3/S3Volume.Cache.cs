using System.Buffers;
using UblkCsi.Engine;
using UblkCsi.Stores.Internal;

namespace UblkCsi.Stores.S3;

/// <summary>Cache half of <see cref="S3Volume"/>: downloads, read-ahead, eviction.</summary>
internal sealed partial class S3Volume
{
    /// <summary>Awaited before each download starts (tests hold a download with it); null in production.</summary>
    internal Func<long, Task>? BeforeDownloadForTests { get; set; }

    // A method of its own so the closure is allocated only when a download starts, not on every
    // call of the hot-path methods that may start one.
    private Task StartLoad(long index, ulong entry) => Task.Run(() => LoadAsync(index, entry));

    private async Task LoadAsync(long index, ulong entry)
    {
        var length = ChunkLength(index);
        var buffer = ArrayPool<byte>.Shared.Rent(length);
        try
        {
            if (BeforeDownloadForTests is { } hold)
            {
                await hold(index).ConfigureAwait(false);
            }

            var key = _template.ChunkKey(index, entry)!;
            var n = await _bucket.GetIntoAsync(key, buffer.AsMemory(0, length), CancellationToken.None).ConfigureAwait(false);
            if (n < 0)
            {
                throw new BlockBackendException(BlockBackendException.EIO, $"volume '{VolumeId}': chunk object '{key}' is missing from the bucket");
            }

            buffer.AsSpan(n, length - n).Clear();
            RandomAccess.Write(_cache, buffer.AsSpan(0, length), index * _chunkSize);
            lock (_gate)
            {
                var state = _states[index]!;
                state.Loaded = true;
                state.LoadTask = null;
                Touch(index, state); // most recently used: the reader waiting for it must find it cached
                _cachedBytes += length;
            }
        }
        catch
        {
            lock (_gate)
            {
                _states[index]!.LoadTask = null;
            }

            throw;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }

        EvictIfOverLimit(keep: index);
    }

    private void MaybeReadAhead(long offset, int length)
    {
        if (_readAhead == 0)
        {
            return;
        }

        lock (_gate)
        {
            var sequential = offset == _lastReadEnd;
            _lastReadEnd = offset + length;
            if (!sequential)
            {
                return;
            }

            var next = (offset + length + _chunkSize - 1) / _chunkSize;
            for (var index = next; index < Math.Min(next + _readAhead, _entries.Length); index++)
            {
                var state = State(index);
                var entry = _entries[index];
                if (!state.Loaded && state.LoadTask is null && entry != 0)
                {
                    state.LoadTask = StartLoad(index, entry);
                    state.LoadTask.ContinueWith(static t => _ = t.Exception, TaskContinuationOptions.OnlyOnFaulted); // the real read retries
                }
            }
        }
    }

    /// <summary>
    /// Punches out least recently used clean chunks until the cache is under 90% of its bound. Victims
    /// come from the LRU list's head (skipping the few dirty or busy chunks there), and the holes are
    /// punched outside the gate: hits on other chunks never wait for an eviction, and I/O on a victim
    /// waits for its hole and then downloads it again.
    /// </summary>
    private void EvictIfOverLimit(long keep)
    {
        List<long>? victims = null;
        TaskCompletionSource? punched = null;
        lock (_gate)
        {
            if (_cachedBytes <= _cacheLimit || _disposed)
            {
                return;
            }

            for (var node = _lru.First; node is not null && _cachedBytes > _cacheLimit * 9 / 10;)
            {
                var next = node.Next;
                var index = node.Value;
                if (index != keep && _states[index] is { Dirty: false, Uploading: false, Marked: false, ActiveIo: 0, LoadTask: null } state)
                {
                    punched ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                    (victims ??= []).Add(index);
                    state.Loaded = false;
                    state.LoadTask = punched.Task;
                    _lru.Remove(node);
                    _cachedBytes -= ChunkLength(index);
                }

                node = next;
            }
        }

        if (victims is null)
        {
            return;
        }

        foreach (var index in victims)
        {
            var ok = LinuxFile.PunchHole(_cache, index * _chunkSize, ChunkLength(index)) == 0;
            lock (_gate)
            {
                var state = _states[index]!;
                state.LoadTask = null;
                if (!ok)
                {
                    state.Loaded = true; // still holds its bytes: keep it cached
                    _cachedBytes += ChunkLength(index);
                    Touch(index, state);
                }
            }
        }

        punched!.SetResult();
    }

    private async Task DrainBackgroundWorkAsync()
    {
        List<Task> running = [];
        lock (_gate)
        {
            // Called once at dispose: a scan of every chunk is fine here.
            foreach (var state in _states)
            {
                if (state?.LoadTask is { } load)
                {
                    running.Add(load);
                }

                if (state?.UploadTask is { } upload)
                {
                    running.Add(upload);
                }
            }

            if (_compaction is { } compaction)
            {
                running.Add(compaction);
            }

            if (_cleanup is { } cleanup)
            {
                running.Add(cleanup);
            }
        }

        try
        {
            await Task.WhenAll(running).ConfigureAwait(false);
        }
        catch
        {
            // Errors were reported to the I/O that needed them.
        }
    }
}
