using System.Text;
using UblkCsi.Linux;

namespace UblkCsi.TestSupport;

/// <summary>
/// Leaves a socket file behind the way a SIGKILLed server does: bound and listening, then the
/// descriptor closed without unlink. (.NET's Socket.Dispose unlinks, so raw libc is used.)
/// </summary>
public static class DeadSocket
{
    public static unsafe void LeaveBehind(string path)
    {
        // Close-on-exec: a process that another test starts while this descriptor is open would
        // otherwise inherit it and keep the "dead" socket listening for as long as it runs.
        var fd = Libc.Socket(Libc.AF_UNIX, Libc.SOCK_STREAM | Libc.SOCK_CLOEXEC, 0);
        if (fd < 0)
        {
            throw new IOException("socket() failed");
        }
        try
        {
            var address = new byte[110];
            address[0] = Libc.AF_UNIX;
            Encoding.UTF8.GetBytes(path).CopyTo(address, 2);
            fixed (byte* a = address)
            {
                if (Libc.Bind(fd, a, address.Length) != 0)
                {
                    throw new IOException("bind() failed");
                }
            }

            if (Libc.Listen(fd, 1) != 0)
            {
                throw new IOException("listen() failed");
            }
        }
        finally
        {
            Libc.Close(fd);
        }
    }
}
