using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using UblkCsi.GrpcEndpoints;

namespace UblkCsi.Stores.Nbd;

/// <summary>Opens the socket to an NBD server: TCP (no Nagle: requests are small and latency-bound) or a unix socket.</summary>
internal static partial class NbdTransport
{
    private const int GetStatusFlags = 3; // F_GETFL
    private const int SetStatusFlags = 4; // F_SETFL
    private const int NonBlocking = 0x800; // O_NONBLOCK on x86-64 and arm64
    /// <summary>Socket buffers big enough for a queue's worth of 1 MiB writes in flight.</summary>
    private const int SocketBufferBytes = 4 * 1024 * 1024;

    public static async Task<Socket> ConnectAsync(GrpcEndpoint endpoint, CancellationToken cancellationToken)
    {
        Socket socket;
        EndPoint target;
        if (endpoint.Kind == GrpcEndpointKind.Unix)
        {
            socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            target = new UnixDomainSocketEndPoint(endpoint.UnixPath!);
        }
        else
        {
            target = IPAddress.TryParse(endpoint.Host, out var address)
                ? new IPEndPoint(address, endpoint.Port)
                : new DnsEndPoint(endpoint.Host!, endpoint.Port);
            socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        }

        try
        {
            socket.SendBufferSize = SocketBufferBytes;
            socket.ReceiveBufferSize = SocketBufferBytes;
            await socket.ConnectAsync(target, cancellationToken).ConfigureAwait(false);
            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Puts a negotiated connection's socket back into blocking mode for the transmission phase, whose
    /// sender and receiver threads then wait inside send and recv themselves. The runtime leaves a
    /// socket that has seen an asynchronous call (the bounded negotiation) non-blocking and emulates
    /// synchronous calls through its epoll thread, which costs a wake-up hop and an allocation each
    /// time a receive has to wait. Closing still ends a blocked call: the connection shuts the socket
    /// down first.
    /// </summary>
    public static void UseBlockingCalls(Socket socket)
    {
        var flags = fcntl(socket.SafeHandle, GetStatusFlags, 0);
        if (flags < 0 || fcntl(socket.SafeHandle, SetStatusFlags, flags & ~NonBlocking) < 0)
        {
            throw new SocketException(Marshal.GetLastPInvokeError());
        }
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int fcntl(SafeSocketHandle fd, int command, int argument);
}
