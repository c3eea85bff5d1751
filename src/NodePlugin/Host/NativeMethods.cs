using System.Runtime.InteropServices;
using UblkCsi.Linux;

namespace UblkCsi.NodePlugin.Host;

/// <summary>The few libc calls the node plugin needs beyond what .NET offers.</summary>
internal static class NativeMethods
{
    /// <summary>statvfs(2); throws an IOException naming the path and errno.</summary>
    public static Libc.StatVfs GetFilesystemStatistics(string path)
    {
        if (Libc.Statvfs(path, out var result) != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            throw new IOException($"statvfs {path}: {Marshal.GetPInvokeErrorMessage(errno)}", errno);
        }

        return result;
    }

    /// <summary>fsyncs a directory so renames and removals in it are durable; best effort.</summary>
    public static void SyncDirectory(string path)
    {
        var fd = Libc.Open(path, Libc.O_RDONLY | Libc.O_DIRECTORY | Libc.O_CLOEXEC, 0);
        if (fd >= 0)
        {
            Libc.Fsync(fd);
            Libc.Close(fd);
        }
    }
}
