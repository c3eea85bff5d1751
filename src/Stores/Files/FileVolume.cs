using System.Buffers;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;
using UblkCsi.Engine;
using UblkCsi.Engine.Buffers;
using UblkCsi.Engine.Threading;
using UblkCsi.Stores.Internal;

namespace UblkCsi.Stores.Files;

/// <summary>How a file volume reaches its image: around the page cache or through it.</summary>
public enum DirectIoMode
{
    /// <summary>O_DIRECT when the filesystem accepts it, else buffered.</summary>
    Auto,

    /// <summary>O_DIRECT or fail to open.</summary>
    On,

    /// <summary>Through the page cache (a second cache under the one above /dev/ublkbN).</summary>
    Off,
}

/// <summary>
/// A volume that is one sparse image file, opened with O_DIRECT by default: the page cache above
/// /dev/ublkbN is the only cache, as with ublksrv's loop target and the kernel loop driver's
/// direct-io mode. Direct reads and writes wait for the disk, so they never block the caller:
/// on an engine queue thread they are submitted on that queue's own io_uring (<see cref="QueueIo"/>)
/// and complete there, elsewhere they run on the blocking workers;
/// a request that is not 4096-aligned (offset, length) goes through a second, buffered descriptor
/// of the same file (the kernel keeps the two coherent: direct I/O writes back and invalidates the
/// cached range), and one whose buffer is not aligned bounces through an aligned pooled buffer. The
/// device gets a 4096-byte logical block size in this mode, so the engine never sends either.
/// <para>
/// Buffered mode (<see cref="DirectIoMode.Off"/>, or Auto where the filesystem refuses O_DIRECT):
/// reads, page-cache writes, discards and write-zeroes run synchronously on the caller's thread
/// (the engine's queue thread): they cost microseconds and an inline completion is the cheapest the
/// engine can get. FLUSH (fdatasync) and FUA writes
/// (pwritev2 with RWF_DSYNC) wait for the disk, so they run on the engine's dedicated blocking workers
/// (<see cref="BlockingWorkerPool"/>, never the .NET thread pool that serves gRPC) and the queue thread
/// keeps serving other requests meanwhile. Nothing here allocates per request.
/// </para>
/// </summary>
public sealed class FileVolume : StoreVolume
{
    private static readonly BlockingCallAction SyncCall = static (target, _, _, _) => ((FileVolume)target).SyncNow();
    private static readonly BlockingCallAction DurableWriteCall = static (target, offset, _, data) => ((FileVolume)target).WriteDurableNow(offset, data.Span);
    private static readonly BlockingCallAction ZeroFillCall = static (target, offset, length, _) => ((FileVolume)target).WriteZeroBytes(offset, length);
    private static readonly BlockingCallAction DirectReadCall = static (target, offset, _, data) => ((FileVolume)target).ReadDirectNow(offset, MemoryMarshal.AsMemory(data));
    private static readonly BlockingCallAction DirectWriteCall = static (target, offset, fua, data) => ((FileVolume)target).WriteDirectNow(offset, data, fua != 0);

    /// <summary>Alignment of offsets, lengths and buffers for O_DIRECT on any Linux filesystem and disk.</summary>
    public const int DirectIoAlignment = 4096;

    /// <summary>The buffered descriptor: every call in buffered mode, unaligned requests in direct mode, metadata calls.</summary>
    private readonly SafeFileHandle _file;

    /// <summary>The O_DIRECT descriptor, or null in buffered mode.</summary>
    private readonly SafeFileHandle? _direct;
    private readonly BlockingWorkerPool _workers;

    // Learned once per open: filesystems either support these fallocate modes or never will.
    private volatile bool _zeroRangeUnsupported;
    private volatile bool _punchHoleUnsupported;
    private volatile bool _durableWriteUnsupported;

    private FileVolume(string volumeId, SafeFileHandle file, SafeFileHandle? direct, long sizeBytes, bool readOnly, BlockingWorkerPool workers)
        : base(volumeId, new BlockBackendInfo(
            sizeBytes,
            LogicalBlockSize: direct != null && sizeBytes % DirectIoAlignment == 0 ? DirectIoAlignment : StoreLimits.IoAlignment,
            PhysicalBlockSize: 4096,
            BlockBackendFeatures.VolatileCache | BlockBackendFeatures.Fua | BlockBackendFeatures.Discard | BlockBackendFeatures.WriteZeroes,
            DiscardGranularity: 4096), readOnly)
    {
        _file = file;
        _direct = direct;
        _workers = workers;
    }

    /// <summary>True when the image is read and written with O_DIRECT.</summary>
    public bool DirectIo => _direct != null;

    /// <summary>
    /// Opens an existing image. <paramref name="sizeBytes"/> is the volume size recorded by the store
    /// (the file may be larger after an interrupted expand; reads past its end return zeros).
    /// With <paramref name="exclusiveWriter"/>, a read-write open takes the image's writer lock, held
    /// until the volume is disposed: two writers of one image would overwrite each other's blocks
    /// under two filesystems' caches, so a second one (another device of this process, another
    /// process, the operator tool) is refused.
    /// </summary>
    /// <exception cref="ImageLockedException">Another writer holds the image's lock.</exception>
    public static FileVolume Open(string volumeId, string imagePath, long sizeBytes, bool readOnly, BlockingWorkerPool? workers = null, DirectIoMode directIo = DirectIoMode.Auto, bool exclusiveWriter = false)
    {
        // FileShare.ReadWrite: .NET maps FileShare.None to an exclusive flock, which would stop the
        // controller from snapshotting an attached volume. Writers exclude each other with a record
        // lock instead (an OFD lock), which flock and plain readers never see.
        var file = File.OpenHandle(imagePath, FileMode.Open, readOnly ? FileAccess.Read : FileAccess.ReadWrite, FileShare.ReadWrite);
        SafeFileHandle? direct = null;
        try
        {
            if (!readOnly && exclusiveWriter)
            {
                var errno = LinuxFile.TryLockForWriting(file);
                if (errno != 0)
                {
                    throw errno == LinuxFile.EAGAIN ? new ImageLockedException(volumeId) : LinuxFile.Error(errno, "locking the image for writing");
                }
            }

            direct = directIo == DirectIoMode.Off ? null : OpenDirect(imagePath, readOnly, directIo);
        }
        catch
        {
            file.Dispose();
            throw;
        }

        return new FileVolume(volumeId, file, direct, sizeBytes, readOnly, workers ?? BlockingWorkerPool.Shared);
    }

    /// <summary>
    /// <see cref="Open"/>; with <paramref name="writerLockWait"/>, a read-write open takes the image's
    /// writer lock, waiting up to that long for another writer to let go (most often the previous
    /// process of a restarted node plugin, which lets go as it exits), and is refused after that.
    /// </summary>
    /// <exception cref="StoreException">FailedPrecondition: another writer kept the image locked.</exception>
    public static async Task<FileVolume> OpenAsync(string volumeId, string imagePath, long sizeBytes, bool readOnly, DirectIoMode directIo, TimeSpan? writerLockWait, CancellationToken cancellationToken)
    {
        var deadline = DateTime.UtcNow + (writerLockWait ?? TimeSpan.Zero);
        while (true)
        {
            try
            {
                return Open(volumeId, imagePath, sizeBytes, readOnly, directIo: directIo, exclusiveWriter: writerLockWait is not null);
            }
            catch (ImageLockedException) when (DateTime.UtcNow < deadline)
            {
                await Task.Delay(TimeSpan.FromMilliseconds(100), cancellationToken).ConfigureAwait(false);
            }
            catch (ImageLockedException e)
            {
                throw new StoreException(StoreErrorCode.FailedPrecondition,
                    $"{e.Message}: another writer kept its image locked for {writerLockWait!.Value.TotalSeconds:0} s", e);
            }
        }
    }

    /// <summary>Whether the filesystem holding <paramref name="imagePath"/> serves O_DIRECT reads (what Auto decides on).</summary>
    public static bool SupportsDirectIo(string imagePath)
    {
        using var direct = TryOpenDirect(imagePath, readOnly: true, out _);
        return direct != null;
    }

    private static SafeFileHandle? OpenDirect(string imagePath, bool readOnly, DirectIoMode mode)
    {
        var direct = TryOpenDirect(imagePath, readOnly, out var errno);
        if (direct == null && mode == DirectIoMode.On)
        {
            throw new StoreParameterException("directIo", $"the filesystem holding '{imagePath}' refuses O_DIRECT (errno {errno}); use directIo=auto or off");
        }

        return direct;
    }

    /// <summary>Opens with O_DIRECT and proves it with one aligned read: some filesystems accept the flag and fail the I/O.</summary>
    private static unsafe SafeFileHandle? TryOpenDirect(string imagePath, bool readOnly, out int errno)
    {
        var direct = LinuxFile.OpenDirect(imagePath, readOnly, out errno);
        if (direct == null)
        {
            return null;
        }

        var probe = (byte*)NativeMemory.AlignedAlloc(DirectIoAlignment, DirectIoAlignment);
        try
        {
            var n = LinuxFile.ReadAt(direct, probe, DirectIoAlignment, 0);
            if (n >= 0)
            {
                return direct;
            }

            errno = (int)-n;
            direct.Dispose();
            return null;
        }
        finally
        {
            NativeMemory.AlignedFree(probe);
        }
    }

    /// <summary>
    /// The file store grows a volume by extending its image (ControllerExpandVolume); an open
    /// volume serves the new size once the image is that long. In direct mode the size must stay
    /// a multiple of the 4096-byte logical block the device was created with.
    /// </summary>
    public override ValueTask<bool> TryGrowAsync(long sizeBytes, CancellationToken cancellationToken = default)
    {
        if (Info.LogicalBlockSize == DirectIoAlignment && sizeBytes % DirectIoAlignment != 0)
        {
            return ValueTask.FromException<bool>(new ArgumentOutOfRangeException(nameof(sizeBytes), $"volume '{VolumeId}' uses 4096-byte blocks; {sizeBytes} bytes is not a multiple"));
        }

        var imageBytes = RandomAccess.GetLength(_file);
        if (imageBytes < sizeBytes)
        {
            return ValueTask.FromException<bool>(new InvalidOperationException($"volume '{VolumeId}': its image holds {imageBytes} bytes, less than {sizeBytes}; the store has not grown it"));
        }

        ServeUpTo(sizeBytes);
        return ValueTask.FromResult(true);
    }

    /// <summary>Makes the volume behave as on a filesystem that cannot punch holes.</summary>
    internal void DisableHolePunchingForTests() => _punchHoleUnsupported = true;

    public override ValueTask DisposeAsync()
    {
        _direct?.Dispose();
        _file.Dispose();
        return default;
    }

    protected override ValueTask ReadCoreAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        if (_direct != null && IsAligned(offset, buffer.Length))
        {
            return QueueRingFor(buffer) is { } queueIo && queueIo.TryRead(DirectFd, buffer, offset, out var pending)
                ? pending
                : _workers.Run(DirectReadCall, this, offset, 0, buffer);
        }

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
        if (_direct != null && IsAligned(offset, data.Length))
        {
            // FUA writes stay on the workers: they need RWF_DSYNC and its fallback.
            return !fua && QueueRingFor(MemoryMarshal.AsMemory(data)) is { } queueIo && queueIo.TryWrite(DirectFd, data, offset, out var pending)
                ? pending
                : _workers.Run(DirectWriteCall, this, offset, fua ? 1 : 0, data);
        }

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

    /// <summary>With O_DIRECT the image is read and written straight from a request's registered pages (zero copy).</summary>
    public override bool ServesRegisteredBuffers => _direct != null;

    protected override bool TryReadRegisteredCore(long offset, RegisteredBuffer buffer, CancellationToken cancellationToken, out ValueTask pending)
    {
        pending = default;
        return _direct != null && IsAligned(offset, buffer.Length) && buffer.Ring.TryReadRegistered(DirectFd, buffer, offset, out pending);
    }

    protected override bool TryWriteRegisteredCore(long offset, RegisteredBuffer buffer, bool fua, CancellationToken cancellationToken, out ValueTask pending)
    {
        // FUA writes stay on the workers (RWF_DSYNC and its fallback), with the data copied to them.
        pending = default;
        return !fua && _direct != null && IsAligned(offset, buffer.Length) && buffer.Ring.TryWriteRegistered(DirectFd, buffer, offset, out pending);
    }

    protected override ValueTask FlushCoreAsync(CancellationToken cancellationToken) =>
        QueueIo.Current is { } queueIo && queueIo.TryDataSync(BufferedFd, out var pending)
            ? pending
            : _workers.Run(SyncCall, this, 0, 0, default);

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

    private int DirectFd => (int)_direct!.DangerousGetHandle();

    private int BufferedFd => (int)_file.DangerousGetHandle();

    /// <summary>
    /// The calling engine queue's ring when aligned direct I/O can go on it (null off a queue thread or for a
    /// buffer that is not aligned, which bounces on a worker): the kernel
    /// completes it there, with no worker hand-off and no wake-up.
    /// </summary>
    private static unsafe QueueIo? QueueRingFor(Memory<byte> buffer)
    {
        if (QueueIo.Current is not { } queueIo)
        {
            return null;
        }

        using var pin = buffer.Pin();
        return IsAligned((byte*)pin.Pointer) ? queueIo : null;
    }

    private static bool IsAligned(long offset, int length) =>
        offset % DirectIoAlignment == 0 && length % DirectIoAlignment == 0;

    private static unsafe bool IsAligned(byte* pointer) => (nuint)pointer % DirectIoAlignment == 0;

    /// <summary>Worker: an aligned direct read; bounces when the caller's buffer is not aligned.</summary>
    private unsafe void ReadDirectNow(long offset, Memory<byte> buffer)
    {
        using var pin = buffer.Pin();
        var target = (byte*)pin.Pointer;
        IoBuffer? bounce = IsAligned(target) ? null : IoBufferPool.Shared.Rent(buffer.Length);
        try
        {
            var into = bounce == null ? target : bounce.Pointer;
            var n = LinuxFile.ReadAt(_direct!, into, buffer.Length, offset);
            if (n < 0)
            {
                throw new BlockBackendException((int)-n, $"volume '{VolumeId}': read failed (errno {-n})");
            }

            // Past the file's end (only if truncated behind our back): zeros.
            new Span<byte>(into + n, buffer.Length - (int)n).Clear();
            if (bounce != null)
            {
                new ReadOnlySpan<byte>(bounce.Pointer, buffer.Length).CopyTo(buffer.Span);
            }
        }
        finally
        {
            if (bounce != null)
            {
                IoBufferPool.Shared.Return(bounce);
            }
        }
    }

    /// <summary>Worker: an aligned direct write (RWF_DSYNC for FUA); bounces when the buffer is not aligned.</summary>
    private unsafe void WriteDirectNow(long offset, ReadOnlyMemory<byte> data, bool fua)
    {
        using var pin = data.Pin();
        var source = (byte*)pin.Pointer;
        IoBuffer? bounce = null;
        if (!IsAligned(source))
        {
            bounce = IoBufferPool.Shared.Rent(data.Length);
            data.Span.CopyTo(new Span<byte>(bounce.Pointer, data.Length));
        }

        try
        {
            var errno = LinuxFile.WriteAt(_direct!, bounce == null ? source : bounce.Pointer, data.Length, offset, durable: fua);
            if (errno is LinuxFile.ENOSYS or LinuxFile.EOPNOTSUPP && fua)
            {
                // No RWF_DSYNC: a plain direct write, then fdatasync (the disk's cache may still hold it).
                errno = LinuxFile.WriteAt(_direct!, bounce == null ? source : bounce.Pointer, data.Length, offset, durable: false);
                if (errno == 0)
                {
                    SyncNow();
                }
            }

            if (errno != 0)
            {
                throw new BlockBackendException(errno, $"volume '{VolumeId}': {(fua ? "FUA " : string.Empty)}write failed (errno {errno})");
            }
        }
        finally
        {
            if (bounce != null)
            {
                IoBufferPool.Shared.Return(bounce);
            }
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
