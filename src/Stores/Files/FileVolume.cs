using Microsoft.Win32.SafeHandles;
using UblkCsi.Engine;
using UblkCsi.Engine.Threading;
using UblkCsi.Stores.Internal;

namespace UblkCsi.Stores.Files;

/// <summary>
/// A volume that is one sparse image file. Reads, page-cache writes, discards and write-zeroes run
/// synchronously on the caller's thread (the engine's queue thread): they cost microseconds and an
/// inline completion is the cheapest the engine can get. FLUSH (fdatasync) and FUA writes
/// (pwritev2 with RWF_DSYNC) wait for the disk, so they run on the engine's dedicated blocking workers
/// (<see cref="BlockingWorkerPool"/>, never the .NET thread pool that serves gRPC) and the queue thread
/// keeps serving other requests meanwhile. Nothing here allocates per request.
/// </summary>
public sealed class FileVolume : StoreVolume
{
    private static readonly BlockingCallAction SyncCall = static (target, _, _, _) => ((FileVolume)target).SyncNow();
    private static readonly BlockingCallAction DurableWriteCall = static (target, offset, _, data) => ((FileVolume)target).WriteDurableNow(offset, data.Span);
    private static readonly BlockingCallAction ZeroFillCall = static (target, offset, length, _) => ((FileVolume)target).WriteZeroBytes(offset, length);

    private readonly SafeFileHandle _file;
    private readonly BlockingWorkerPool _workers;

    // Learned once per open: filesystems either support these fallocate modes or never will.
    private volatile bool _zeroRangeUnsupported;
    private volatile bool _punchHoleUnsupported;
    private volatile bool _durableWriteUnsupported;

    private FileVolume(string volumeId, SafeFileHandle file, long sizeBytes, bool readOnly, BlockingWorkerPool workers)
        : base(volumeId, new BlockBackendInfo(
            sizeBytes,
            LogicalBlockSize: StoreLimits.IoAlignment,
            PhysicalBlockSize: 4096,
            BlockBackendFeatures.VolatileCache | BlockBackendFeatures.Fua | BlockBackendFeatures.Discard | BlockBackendFeatures.WriteZeroes,
            DiscardGranularity: 4096), readOnly)
    {
        _file = file;
        _workers = workers;
    }

    /// <summary>
    /// Opens an existing image. <paramref name="sizeBytes"/> is the volume size recorded by the store
    /// (the file may be larger after an interrupted expand; reads past its end return zeros).
    /// </summary>
    public static FileVolume Open(string volumeId, string imagePath, long sizeBytes, bool readOnly, BlockingWorkerPool? workers = null)
    {
        // FileShare.ReadWrite: .NET maps FileShare.None to an exclusive flock, which would stop the
        // controller from snapshotting an attached volume. Single-writer is the controller's duty.
        var file = File.OpenHandle(imagePath, FileMode.Open, readOnly ? FileAccess.Read : FileAccess.ReadWrite, FileShare.ReadWrite);
        return new FileVolume(volumeId, file, sizeBytes, readOnly, workers ?? BlockingWorkerPool.Shared);
    }

    /// <summary>Makes the volume behave as on a filesystem that cannot punch holes.</summary>
    internal void DisableHolePunchingForTests() => _punchHoleUnsupported = true;

    public override ValueTask DisposeAsync()
    {
        _file.Dispose();
        return default;
    }

    protected override ValueTask ReadCoreAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        try
        {
            var span = buffer.Span;
            while (span.Length > 0)
            {
                var n = RandomAccess.Read(_file, span, offset);
                if (n == 0)
                {
                    span.Clear(); // past the file's end (cannot happen unless truncated behind our back): zeros
                    break;
                }

                span = span[n..];
                offset += n;
            }

            return default;
        }
        catch (IOException e) when (e is not BlockBackendException)
        {
            return ValueTask.FromException(ToBackendError(e, "read"));
        }
    }

    protected override ValueTask WriteCoreAsync(long offset, ReadOnlyMemory<byte> data, bool fua, CancellationToken cancellationToken)
    {
        if (fua)
        {
            return _workers.Run(DurableWriteCall, this, offset, data.Length, data);
        }

        try
        {
            RandomAccess.Write(_file, data.Span, offset);
            return default;
        }
        catch (IOException e) when (e is not BlockBackendException)
        {
            return ValueTask.FromException(ToBackendError(e, "write"));
        }
    }

    protected override ValueTask FlushCoreAsync(CancellationToken cancellationToken) =>
        _workers.Run(SyncCall, this, 0, 0, default);

    protected override ValueTask DiscardCoreAsync(long offset, long length, CancellationToken cancellationToken)
    {
        try
        {
            if (!_punchHoleUnsupported)
            {
                var errno = LinuxFile.PunchHole(_file, offset, length);
                if (errno == 0)
                {
                    return default;
                }

                if (errno != LinuxFile.EOPNOTSUPP)
                {
                    throw new BlockBackendException(errno, $"volume '{VolumeId}': discard failed (errno {errno})");
                }

                _punchHoleUnsupported = true;
            }

            // The contract says discarded ranges read as zeros, so without holes we write zeros:
            // up to gigabytes of writes, so on a blocking worker, never the queue thread.
            return _workers.Run(ZeroFillCall, this, offset, length, default);
        }
        catch (Exception e)
        {
            return ValueTask.FromException(ToBackendError(e, "discard"));
        }
    }

    protected override ValueTask WriteZeroesCoreAsync(long offset, long length, CancellationToken cancellationToken)
    {
        try
        {
            if (!_zeroRangeUnsupported)
            {
                var errno = LinuxFile.ZeroRange(_file, offset, length);
                if (errno == 0)
                {
                    return default;
                }

                if (errno != LinuxFile.EOPNOTSUPP)
                {
                    throw new BlockBackendException(errno, $"volume '{VolumeId}': write-zeroes failed (errno {errno})");
                }

                _zeroRangeUnsupported = true; // e.g. tmpfs: fall back to punching a hole
            }

            return DiscardCoreAsync(offset, length, cancellationToken);
        }
        catch (Exception e)
        {
            return ValueTask.FromException(ToBackendError(e, "write-zeroes"));
        }
    }

    private void SyncNow()
    {
        var errno = LinuxFile.DataSync(_file);
        if (errno != 0)
        {
            throw new BlockBackendException(errno, $"volume '{VolumeId}': fdatasync failed (errno {errno})");
        }
    }

    private void WriteDurableNow(long offset, ReadOnlySpan<byte> data)
    {
        if (!_durableWriteUnsupported)
        {
            var errno = LinuxFile.WriteDurable(_file, data, offset);
            if (errno == 0)
            {
                return;
            }

            if (errno is not (LinuxFile.ENOSYS or LinuxFile.EOPNOTSUPP))
            {
                throw new BlockBackendException(errno, $"volume '{VolumeId}': FUA write failed (errno {errno})");
            }

            _durableWriteUnsupported = true;
        }

        try
        {
            RandomAccess.Write(_file, data, offset);
        }
        catch (IOException e) when (e is not BlockBackendException)
        {
            throw ToBackendError(e, "write");
        }

        SyncNow();
    }

    private void WriteZeroBytes(long offset, long length)
    {
        ReadOnlySpan<byte> zeros = ZeroBlock.Span;
        while (length > 0)
        {
            var n = (int)Math.Min(length, zeros.Length);
            RandomAccess.Write(_file, zeros[..n], offset);
            offset += n;
            length -= n;
        }
    }

    private BlockBackendException ToBackendError(Exception e, string operation)
    {
        if (e is BlockBackendException b)
        {
            return b;
        }

        // On Linux .NET puts the errno into IOException.HResult for plain I/O failures (ENOSPC, EIO).
        var errno = e is IOException && e.HResult is > 0 and < 4096 ? e.HResult : BlockBackendException.EIO;
        return new BlockBackendException(errno, $"volume '{VolumeId}': {operation} failed: {e.Message}", e);
    }
}
