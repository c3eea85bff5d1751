using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace UblkCsi.Linux;

/// <summary>
/// Every libc entry point the product calls, declared once (engine, stores, hosts and tests share
/// them). Calls go straight to the kernel's system calls, so a failure is a Linux errno read with
/// <see cref="LastErrno"/>. Only what .NET does not offer is here.
/// </summary>
public static unsafe partial class Libc
{
    private const string Library = "libc";

    public const int O_RDONLY = 0;
    public const int O_RDWR = 2;
    public const int O_DIRECT = 0x4000;
    public const int O_DIRECTORY = 0x10000;
    public const int O_CLOEXEC = 0x80000;
    public const int O_NONBLOCK = 0x800;

    /// <summary>fcntl commands: the file status flags; a pipe's capacity in bytes; an open file description's record lock (non-blocking).</summary>
    public const int F_GETFL = 3;
    public const int F_SETPIPE_SZ = 1031;
    public const int F_OFD_SETLK = 37;

    /// <summary>Record lock types (struct flock's l_type).</summary>
    public const short F_WRLCK = 1;

    /// <summary>setsockopt: socket level; bytes a receive waits for before the socket reads as ready.</summary>
    public const int SOL_SOCKET = 1;
    public const int SO_RCVLOWAT = 18;

    /// <summary>splice/vmsplice flag: the pipe side of this call does not block.</summary>
    public const uint SPLICE_F_NONBLOCK = 2;

    public const int PROT_READ = 1;
    public const int PROT_WRITE = 2;
    public const int MAP_SHARED = 0x01;
    public const int MAP_PRIVATE = 0x02;
    public const int MAP_ANONYMOUS = 0x20;
    public const int MAP_POPULATE = 0x8000;

    public const int EFD_CLOEXEC = 0x80000;

    public const int AF_UNIX = 1;
    public const int SOCK_STREAM = 1;
    public const int SOCK_CLOEXEC = 0x80000;

    /// <summary>send() flags: this call alone does not block (the socket keeps its mode); no SIGPIPE on a closed peer.</summary>
    public const int MSG_DONTWAIT = 0x40;
    public const int MSG_NOSIGNAL = 0x4000;

    public const long SYS_io_uring_setup = 425;
    public const long SYS_io_uring_enter = 426;
    public const long SYS_io_uring_register = 427;
    public const long SYS_prctl = 157;
    public const long SYS_sched_setaffinity = 203;
    public const long SYS_sched_getaffinity = 204;

    /// <summary>prctl options (include/uapi/linux/prctl.h): mark a task as part of the block I/O path.</summary>
    public const int PR_SET_IO_FLUSHER = 57;
    public const int PR_GET_IO_FLUSHER = 58;

    public static readonly nint MapFailed = -1;

    /// <summary>The errno of the last failed call on this thread.</summary>
    public static int LastErrno => Marshal.GetLastPInvokeError();

    /// <summary>One segment of a vectored read or write (struct iovec).</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct IoVec
    {
        public byte* Base;
        public nuint Length;
    }

    /// <summary>glibc's struct statvfs on 64-bit Linux (112 bytes).</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct StatVfs
    {
        public ulong BlockSize;
        public ulong FragmentSize;
        public ulong Blocks;
        public ulong BlocksFree;
        public ulong BlocksAvailable;
        public ulong Files;
        public ulong FilesFree;
        public ulong FilesAvailable;
        public ulong FsId;
        public ulong Flags;
        public ulong NameMax;
        private fixed int _spare[6];
    }

    // ---- system calls without a libc wrapper (io_uring, prctl, affinity, fstatat)

    [LibraryImport(Library, EntryPoint = "syscall", SetLastError = true)]
    public static partial long Syscall(long number, long arg1, long arg2, long arg3, long arg4, long arg5, long arg6);

    // ---- descriptors by number (the engine's rings, control and char devices)

    [LibraryImport(Library, EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Open(string path, int flags, int mode);

    [LibraryImport(Library, EntryPoint = "close", SetLastError = true)]
    public static partial int Close(int fd);

    [LibraryImport(Library, EntryPoint = "mmap", SetLastError = true)]
    public static partial nint Mmap(nint address, nuint length, int protection, int flags, int fd, long offset);

    [LibraryImport(Library, EntryPoint = "munmap", SetLastError = true)]
    public static partial int Munmap(nint address, nuint length);

    [LibraryImport(Library, EntryPoint = "mincore", SetLastError = true)]
    public static partial int Mincore(nint address, nuint length, byte* vector);

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

    // ---- files opened by .NET (the stores' images and cache files)

    [LibraryImport(Library, EntryPoint = "pread", SetLastError = true)]
    public static partial nint Pread(SafeFileHandle fd, byte* buffer, nuint count, long offset);

    [LibraryImport(Library, EntryPoint = "pwritev2", SetLastError = true)]
    public static partial nint Pwritev2(SafeFileHandle fd, IoVec* iov, int iovcnt, long offset, int flags);

    [LibraryImport(Library, EntryPoint = "fdatasync", SetLastError = true)]
    public static partial int Fdatasync(SafeFileHandle fd);

    [LibraryImport(Library, EntryPoint = "fallocate", SetLastError = true)]
    public static partial int Fallocate(SafeFileHandle fd, int mode, long offset, long length);

    [LibraryImport(Library, EntryPoint = "ftruncate", SetLastError = true)]
    public static partial int Ftruncate(SafeFileHandle fd, long length);

    [LibraryImport(Library, EntryPoint = "lseek", SetLastError = true)]
    public static partial long Lseek(SafeFileHandle fd, long offset, int whence);

    [LibraryImport(Library, EntryPoint = "ioctl", SetLastError = true)]
    public static partial int Ioctl(SafeFileHandle fd, ulong request, SafeFileHandle argument);

    [LibraryImport(Library, EntryPoint = "copy_file_range", SetLastError = true)]
    public static partial nint CopyFileRange(SafeFileHandle fdIn, long* offsetIn, SafeFileHandle fdOut, long* offsetOut, nuint length, uint flags);

    // ---- filesystems, processes, sockets

    [LibraryImport(Library, EntryPoint = "statvfs", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Statvfs(string path, out StatVfs result);

    [LibraryImport(Library, EntryPoint = "kill", SetLastError = true)]
    public static partial int Kill(int pid, int signal);

    /// <summary>The calling thread's kernel task id (its directory in /proc/self/task).</summary>
    [LibraryImport(Library, EntryPoint = "gettid")]
    public static partial int GetTid();

    [LibraryImport(Library, EntryPoint = "socket", SetLastError = true)]
    public static partial int Socket(int domain, int type, int protocol);

    [LibraryImport(Library, EntryPoint = "bind", SetLastError = true)]
    public static partial int Bind(int fd, byte* address, int length);

    [LibraryImport(Library, EntryPoint = "listen", SetLastError = true)]
    public static partial int Listen(int fd, int backlog);

    /// <summary>send(2) on a socket .NET opened: .NET has no per-call non-blocking send (MSG_DONTWAIT).</summary>
    [LibraryImport(Library, EntryPoint = "send", SetLastError = true)]
    public static partial nint Send(System.Net.Sockets.SafeSocketHandle socket, byte* buffer, nuint length, int flags);

    /// <summary>recv(2) on a socket .NET opened, for a non-blocking read (MSG_DONTWAIT) on an engine queue thread.</summary>
    [LibraryImport(Library, EntryPoint = "recv", SetLastError = true)]
    public static partial nint Recv(System.Net.Sockets.SafeSocketHandle socket, byte* buffer, nuint length, int flags);

    [LibraryImport(Library, EntryPoint = "pipe2", SetLastError = true)]
    public static partial int Pipe2(int* fds, int flags);

    /// <summary>fcntl(2) with an int argument (F_SETPIPE_SZ) or none (F_GETFL).</summary>
    [LibraryImport(Library, EntryPoint = "fcntl", SetLastError = true)]
    public static partial int Fcntl(SafeFileHandle fd, int command, int argument);

    [LibraryImport(Library, EntryPoint = "fcntl", SetLastError = true)]
    public static partial int Fcntl(System.Net.Sockets.SafeSocketHandle socket, int command, int argument);

    /// <summary>fcntl(2) with a record lock (F_OFD_SETLK).</summary>
    [LibraryImport(Library, EntryPoint = "fcntl", SetLastError = true)]
    public static partial int Fcntl(SafeFileHandle fd, int command, FileLock* fileLock);

    /// <summary>struct flock (x86-64 and arm64 layout). For OFD locks <see cref="Pid"/> must be 0.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct FileLock
    {
        public short Type;
        public short Whence;
        public long Start;
        public long Length;
        public int Pid;
    }

    /// <summary>vmsplice(2): references to the pages of user memory into a pipe, without copying them.</summary>
    [LibraryImport(Library, EntryPoint = "vmsplice", SetLastError = true)]
    public static partial nint Vmsplice(SafeFileHandle pipe, IoVec* segments, nuint count, uint flags);

    /// <summary>splice(2) from a pipe into a socket: the socket takes the pipe's page references.</summary>
    [LibraryImport(Library, EntryPoint = "splice", SetLastError = true)]
    public static partial nint Splice(SafeFileHandle pipe, long* pipeOffset, System.Net.Sockets.SafeSocketHandle socket, long* socketOffset, nuint length, uint flags);

    [LibraryImport(Library, EntryPoint = "setsockopt", SetLastError = true)]
    public static partial int SetSockOpt(System.Net.Sockets.SafeSocketHandle socket, int level, int name, int* value, int length);
}
