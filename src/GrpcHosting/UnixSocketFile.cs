using System.Net.Sockets;
using System.Runtime.InteropServices;
using UblkCsi.Linux;

namespace UblkCsi.GrpcHosting;

/// <summary>
/// Prepares a unix socket path for listening. A socket file left by a killed process would make
/// bind fail, so it is removed, but only after checking that the path is a socket and that
/// nobody answers on it: a live server is never taken over and a regular file is never deleted.
/// </summary>
public static class UnixSocketFile
{
    private const int AtFdCwd = -100;
    private const int AtSymlinkNoFollow = 0x100;
    private const uint FileTypeMask = 0xF000;
    private const uint SocketType = 0xC000;
    private const int ENOENT = 2;

    /// <summary>Throws <see cref="IOException"/> when the path cannot be used; returns true when a stale socket was removed.</summary>
    public static async Task<bool> PrepareForBindAsync(string path, CancellationToken cancellationToken)
    {
        var directory = Path.GetDirectoryName(path);
        if (directory is not null && !Directory.Exists(directory))
        {
            throw new IOException($"cannot listen on {path}: directory {directory} does not exist");
        }

        var kind = GetFileType(path);
        if (kind is null)
        {
            return false;
        }

        if (kind != SocketType)
        {
            throw new IOException($"cannot listen on {path}: it exists and is not a unix socket; refusing to replace it");
        }

        using var probe = new Socket(AddressFamily.Unix, System.Net.Sockets.SocketType.Stream, ProtocolType.Unspecified);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(TimeSpan.FromSeconds(2));
        try
        {
            await probe.ConnectAsync(new UnixDomainSocketEndPoint(path), timeout.Token);
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.ConnectionRefused)
        {
            // Nobody listens: the socket file outlived its process.
            File.Delete(path);
            return true;
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new IOException($"cannot listen on {path}: a process holds it but does not accept connections");
        }

        throw new IOException($"cannot listen on {path}: another process is serving it");
    }

    /// <summary>Removes the socket file after shutdown; anything else at the path is left alone.</summary>
    public static void RemoveIfSocket(string path)
    {
        if (GetFileType(path) == SocketType)
        {
            File.Delete(path);
        }
    }

    /// <summary>The S_IFMT bits of the path itself (symlinks not followed), or null when nothing is there.</summary>
    private static unsafe uint? GetFileType(string path)
    {
        // fstatat through syscall(2): libc's stat wrappers differ between glibc versions and musl,
        // the kernel's struct stat does not. Only st_mode is read.
        var (syscallNumber, modeOffset) = RuntimeInformation.ProcessArchitecture switch
        {
            Architecture.X64 => (262L, 24),
            Architecture.Arm64 => (79L, 16),
            var other => throw new PlatformNotSupportedException($"unix socket inspection is not implemented for {other}"),
        };

        var buffer = stackalloc byte[256];
        var pathBytes = System.Text.Encoding.UTF8.GetBytes(path + "\0");
        fixed (byte* p = pathBytes)
        {
            if (Libc.Syscall(syscallNumber, AtFdCwd, (long)p, (long)buffer, AtSymlinkNoFollow, 0, 0) != 0)
            {
                var errno = Libc.LastErrno;
                return errno == ENOENT
                    ? null
                    : throw new IOException($"cannot inspect {path}: {Marshal.GetPInvokeErrorMessage(errno)}");
            }
        }

        return *(uint*)(buffer + modeOffset) & FileTypeMask;
    }
}
