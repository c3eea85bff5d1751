using System.Runtime.InteropServices;

namespace UblkCsi.Engine.Interop;

/// <summary>
/// The few libc entry points the engine needs. Calls go straight to the kernel's system calls, so
/// every failure is a Linux errno read with <see cref="Marshal.GetLastPInvokeError"/>.
/// </summary>
internal static unsafe partial class Libc
{
    private const string Library = "libc";

    public const int O_RDONLY = 0;
    public const int O_RDWR = 2;
    public const int O_DIRECTORY = 0x10000;
    public const int O_CLOEXEC = 0x80000;

    public const int PROT_READ = 1;
    public const int PROT_WRITE = 2;
    public const int MAP_SHARED = 0x01;
    public const int MAP_POPULATE = 0x8000;

    public const int EFD_CLOEXEC = 0x80000;

    public const long SYS_io_uring_setup = 425;
    public const long SYS_io_uring_enter = 426;
    public const long SYS_prctl = 157;
    public const long SYS_sched_setaffinity = 203;
    public const long SYS_sched_getaffinity = 204;

    /// <summary>prctl options (include/uapi/linux/prctl.h): mark a task as part of the block I/O path.</summary>
    public const int PR_SET_IO_FLUSHER = 57;
    public const int PR_GET_IO_FLUSHER = 58;

    public static readonly nint MapFailed = -1;

    [LibraryImport(Library, SetLastError = true)]
    public static partial long syscall(long number, long arg1, long arg2, long arg3, long arg4, long arg5, long arg6);

    [LibraryImport(Library, EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Open(string path, int flags, int mode);

    [LibraryImport(Library, EntryPoint = "close", SetLastError = true)]
    public static partial int Close(int fd);

    [LibraryImport(Library, EntryPoint = "mmap", SetLastError = true)]
    public static partial nint Mmap(nint address, nuint length, int protection, int flags, int fd, long offset);

    [LibraryImport(Library, EntryPoint = "munmap", SetLastError = true)]
    public static partial int Munmap(nint address, nuint length);

    [LibraryImport(Library, EntryPoint = "pread", SetLastError = true)]
    public static partial nint Pread(int fd, void* buffer, nuint count, long offset);

    [LibraryImport(Library, EntryPoint = "pwrite", SetLastError = true)]
    public static partial nint Pwrite(int fd, void* buffer, nuint count, long offset);

    [LibraryImport(Library, EntryPoint = "write", SetLastError = true)]
    public static partial nint Write(int fd, void* buffer, nuint count);

    [LibraryImport(Library, EntryPoint = "eventfd", SetLastError = true)]
    public static partial int EventFd(uint initialValue, int flags);

    [LibraryImport(Library, EntryPoint = "fsync", SetLastError = true)]
    public static partial int Fsync(int fd);

    /// <summary>The errno of the last failed call on this thread.</summary>
    public static int LastErrno => Marshal.GetLastPInvokeError();
}
