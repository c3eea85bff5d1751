using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;
using UblkCsi.Linux;

namespace UblkCsi.Stores.Internal;

/// <summary>
/// The Linux file calls .NET does not expose: hole punching, range zeroing, data-only sync,
/// per-write sync, reflink, sparse-aware copy and filesystem statistics. Each returns 0 or a
/// positive errno instead of throwing, so callers choose between fallback and failure.
/// </summary>
internal static class LinuxFile
{
    public const int EINTR = 4;
    public const int EAGAIN = 11;
    public const int EACCES = 13;
    public const int EINVAL = 22;
    public const int EXDEV = 18;
    public const int ENXIO = 6;
    public const int ENOSYS = 38;
    public const int EOPNOTSUPP = 95;
    public const int ENOTTY = 25;

    private const int FallocKeepSize = 0x01;
    private const int FallocPunchHole = 0x02;
    private const int FallocZeroRange = 0x10;
    private const int RwfDsync = 0x02;
    private const ulong Ficlone = 0x40049409;
    private const int SeekData = 3;
    private const int SeekHole = 4;

    /// <summary>Deallocates a range; the file keeps its size and the range reads as zeros.</summary>
    public static int PunchHole(SafeFileHandle file, long offset, long length)
    {
        int errno;
        while ((errno = Errno(Libc.Fallocate(file, FallocPunchHole | FallocKeepSize, offset, length))) == EINTR)
        {
        }

        return errno;
    }

    /// <summary>Zeroes a range without writing data (unwritten extents).</summary>
    public static int ZeroRange(SafeFileHandle file, long offset, long length)
    {
        int errno;
        while ((errno = Errno(Libc.Fallocate(file, FallocZeroRange | FallocKeepSize, offset, length))) == EINTR)
        {
        }

        return errno;
    }

    /// <summary>
    /// Takes a write lock on the whole file for this open file description (an OFD lock: held until
    /// the descriptor closes, exclusive against every other open of the file, in this process or
    /// another). Returns EAGAIN while another open holds it. Advisory: only openers that ask are stopped.
    /// </summary>
    public static unsafe int TryLockForWriting(SafeFileHandle file)
    {
        var request = new Libc.FileLock { Type = Libc.F_WRLCK };
        int errno;
        while ((errno = Errno(Libc.Fcntl(file, Libc.F_OFD_SETLK, &request))) == EINTR)
        {
        }

        return errno == EACCES ? EAGAIN : errno;
    }

    /// <summary>fdatasync: completed writes and the metadata needed to read them are durable.</summary>
    public static int DataSync(SafeFileHandle file)
    {
        int errno;
        while ((errno = Errno(Libc.Fdatasync(file))) == EINTR)
        {
        }

        return errno;
    }

    /// <summary>fsync of a directory, so a rename or create inside it is durable.</summary>
    public static void SyncDirectory(string path)
    {
        // .NET refuses to open directories, so this one goes through open(2) directly.
        var fd = Libc.Open(path, Libc.O_RDONLY | Libc.O_DIRECTORY | Libc.O_CLOEXEC, 0);
        if (fd < 0)
        {
            throw Error(Marshal.GetLastPInvokeError(), $"open({path})");
        }

        try
        {
            int errno;
            while ((errno = Errno(Libc.Fsync(fd))) == EINTR)
            {
            }

            if (errno != 0)
            {
                throw Error(errno, $"fsync({path})");
            }
        }
        finally
        {
            _ = Libc.Close(fd);
        }
    }

    /// <summary>Sets the file's size (sparse growth).</summary>
    public static int Truncate(SafeFileHandle file, long length)
    {
        int errno;
        while ((errno = Errno(Libc.Ftruncate(file, length))) == EINTR)
        {
        }

        return errno;
    }

    /// <summary>
    /// pwritev2 with RWF_DSYNC: the write and the metadata to read it back are durable on return.
    /// Writes everything (loops on short writes). Returns ENOSYS/EOPNOTSUPP when the kernel lacks it.
    /// </summary>
    public static unsafe int WriteDurable(SafeFileHandle file, ReadOnlySpan<byte> data, long offset)
    {
        fixed (byte* p = data)
        {
            var done = 0;
            while (done < data.Length)
            {
                var iov = new Libc.IoVec { Base = p + done, Length = (nuint)(data.Length - done) };
                var n = Libc.Pwritev2(file, &iov, 1, offset + done, RwfDsync);
                if (n < 0)
                {
                    var errno = Marshal.GetLastPInvokeError();
                    if (errno == EINTR)
                    {
                        continue;
                    }

                    return errno;
                }

                done += (int)n;
            }
        }

        return 0;
    }

    /// <summary>
    /// Opens <paramref name="path"/> with O_DIRECT (no page cache between this process and the disk).
    /// Returns null and the errno when the filesystem refuses it (EINVAL: e.g. tmpfs before Linux 6.6).
    /// </summary>
    public static SafeFileHandle? OpenDirect(string path, bool readOnly, out int errno)
    {
        var fd = Libc.Open(path, (readOnly ? Libc.O_RDONLY : Libc.O_RDWR) | Libc.O_DIRECT | Libc.O_CLOEXEC, 0);
        errno = fd < 0 ? Marshal.GetLastPInvokeError() : 0;
        return fd < 0 ? null : new SafeFileHandle(fd, ownsHandle: true);
    }

    /// <summary>pread until <paramref name="length"/> bytes or end of file; returns bytes read or a negative errno.</summary>
    public static unsafe long ReadAt(SafeFileHandle file, byte* buffer, int length, long offset)
    {
        var done = 0;
        while (done < length)
        {
            var n = Libc.Pread(file, buffer + done, (nuint)(length - done), offset + done);
            if (n < 0)
            {
                var errno = Marshal.GetLastPInvokeError();
                if (errno == EINTR)
                {
                    continue;
                }

                return -errno;
            }

            if (n == 0)
            {
                break;
            }

            done += (int)n;
        }

        return done;
    }

    /// <summary>pwrite (pwritev2 with RWF_DSYNC when <paramref name="durable"/>) of all bytes; returns 0 or an errno.</summary>
    public static unsafe int WriteAt(SafeFileHandle file, byte* data, int length, long offset, bool durable)
    {
        var done = 0;
        while (done < length)
        {
            var iov = new Libc.IoVec { Base = data + done, Length = (nuint)(length - done) };
            var n = Libc.Pwritev2(file, &iov, 1, offset + done, durable ? RwfDsync : 0);
            if (n < 0)
            {
                var errno = Marshal.GetLastPInvokeError();
                if (errno == EINTR)
                {
                    continue;
                }

                return errno;
            }

            done += (int)n;
        }

        return 0;
    }

    /// <summary>Shares all of <paramref name="source"/>'s extents with <paramref name="destination"/> (FICLONE).</summary>
    public static int Reflink(SafeFileHandle destination, SafeFileHandle source)
    {
        int errno;
        while ((errno = Errno(Libc.Ioctl(destination, Ficlone, source))) == EINTR)
        {
        }

        return errno;
    }

    /// <summary>
    /// Copies the allocated ranges of <paramref name="source"/> (first <paramref name="length"/> bytes)
    /// into <paramref name="destination"/>, leaving holes as holes. Uses copy_file_range (which the
    /// kernel may turn into a reflink or server-side copy) and falls back to read/write.
    /// </summary>
    public static unsafe void SparseCopy(SafeFileHandle source, SafeFileHandle destination, long length)
    {
        byte[]? buffer = null;
        long position = 0;
        while (position < length)
        {
            var dataStart = Libc.Lseek(source, position, SeekData);
            if (dataStart < 0)
            {
                var errno = Marshal.GetLastPInvokeError();
                if (errno == ENXIO)
                {
                    break; // no data after position: the rest is a hole
                }

                if (errno is EINVAL or EOPNOTSUPP)
                {
                    dataStart = position; // filesystem without SEEK_DATA: copy everything
                }
                else
                {
                    throw Error(errno, "lseek(SEEK_DATA)");
                }
            }

            if (dataStart >= length)
            {
                break;
            }

            var dataEnd = Libc.Lseek(source, dataStart, SeekHole);
            if (dataEnd < 0 || dataEnd > length)
            {
                dataEnd = length;
            }

            long copied = dataStart;
            while (copied < dataEnd)
            {
                long inOff = copied, outOff = copied;
                var n = Libc.CopyFileRange(source, &inOff, destination, &outOff, (nuint)Math.Min(dataEnd - copied, 1L << 30), 0);
                if (n > 0)
                {
                    copied += n;
                    continue;
                }

                var errno = n < 0 ? Marshal.GetLastPInvokeError() : 0;
                if (errno == EINTR)
                {
                    continue;
                }

                if (n == 0 || errno is EXDEV or ENOSYS or EOPNOTSUPP or EINVAL)
                {
                    buffer ??= new byte[1 << 20];
                    copied = CopyByReadWrite(source, destination, copied, dataEnd, buffer);
                    break;
                }

                throw Error(errno, "copy_file_range");
            }

            position = dataEnd;
        }
    }

    /// <summary>Bytes available to unprivileged users on the filesystem holding <paramref name="path"/>.</summary>
    public static long AvailableBytes(string path)
    {
        if (Libc.Statvfs(path, out var statistics) != 0)
        {
            throw Error(Marshal.GetLastPInvokeError(), $"statvfs({path})");
        }

        return (long)Math.Min(statistics.BlocksAvailable * statistics.FragmentSize, long.MaxValue);
    }

    /// <summary>An IOException carrying the errno in HResult (as .NET does on Unix).</summary>
    public static IOException Error(int errno, string call) =>
        new($"{call} failed: {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno})", errno);

    private static long CopyByReadWrite(SafeFileHandle source, SafeFileHandle destination, long from, long to, byte[] buffer)
    {
        while (from < to)
        {
            var n = RandomAccess.Read(source, buffer.AsSpan(0, (int)Math.Min(buffer.Length, to - from)), from);
            if (n == 0)
            {
                break;
            }

            RandomAccess.Write(destination, buffer.AsSpan(0, n), from);
            from += n;
        }

        return to;
    }

    private static int Errno(int result) => result == 0 ? 0 : Marshal.GetLastPInvokeError();
}
