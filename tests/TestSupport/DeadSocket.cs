using System.Runtime.InteropServices;
using System.Text;

namespace UblkCsi.TestSupport;

/// <summary>
/// Leaves a socket file behind the way a SIGKILLed server does: bound and listening, then the
/// descriptor closed without unlink. (.NET's Socket.Dispose unlinks, so raw libc is used.)
/// </summary>
public static partial class DeadSocket
{
    public static unsafe void LeaveBehind(string path)
    {
        const int AfUnix = 1;
        const int SockStream = 1;
        var fd = socket(AfUnix, SockStream, 0);
        if (fd < 0)
        {
            throw new IOException("socket() failed");
        }
        try
        {
            var address = new byte[110];
            address[0] = AfUnix;
            Encoding.UTF8.GetBytes(path).CopyTo(address, 2);
            fixed (byte* a = address)
            {
                if (bind(fd, a, address.Length) != 0)
                {
                    throw new IOException("bind() failed");
                }
            }

            if (listen(fd, 1) != 0)
            {
                throw new IOException("listen() failed");
            }
        }
        finally
        {
            close(fd);
        }
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int socket(int domain, int type, int protocol);

    [LibraryImport("libc", SetLastError = true)]
    private static unsafe partial int bind(int fd, byte* address, int length);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int listen(int fd, int backlog);

    [LibraryImport("libc")]
    private static partial int close(int fd);
}
