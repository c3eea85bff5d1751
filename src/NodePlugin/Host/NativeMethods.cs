using System.Runtime.InteropServices;

namespace UblkCsi.NodePlugin.Host;

/// <summary>The few libc calls the node plugin needs beyond what .NET offers.</summary>
internal static partial class NativeMethods
{
    private const int ORdOnly = 0;
    private const int ODirectory = 0x10000;
    private const int OCloexec = 0x80000;

    /// <summary>glibc's struct statvfs on 64-bit Linux (112 bytes).</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct StatVfs
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
        private unsafe fixed int _spare[6];
    }

    [LibraryImport("libc", EntryPoint = "statvfs", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int StatVfsNative(string path, out StatVfs result);

    [LibraryImport("libc", EntryPoint = "open", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static partial int Fsync(int fd);

    [LibraryImport("libc", EntryPoint = "close")]
    private static partial int Close(int fd);

    /// <summary>statvfs(2); throws an IOException naming the path and errno.</summary>
    public static StatVfs GetFilesystemStatistics(string path)
    {
        if (StatVfsNative(path, out var result) != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            throw new IOException($"statvfs {path}: {Marshal.GetPInvokeErrorMessage(errno)}", errno);
        }

        return result;
    }

    /// <summary>fsyncs a directory so renames and removals in it are durable; best effort.</summary>
    public static void SyncDirectory(string path)
    {
        var fd = Open(path, ORdOnly | ODirectory | OCloexec);
        if (fd >= 0)
        {
            Fsync(fd);
            Close(fd);
        }
    }
}
