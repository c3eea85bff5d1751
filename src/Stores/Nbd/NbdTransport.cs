using System.Net;
using System.Net.Sockets;
using UblkCsi.GrpcEndpoints;

namespace UblkCsi.Stores.Nbd;

/// <summary>Creates the socket to an NBD server: TCP (no Nagle: requests are small and latency-bound) or a unix socket.</summary>
internal static class NbdTransport
{
    /// <summary>Socket buffers big enough for a queue's worth of 1 MiB writes in flight.</summary>
    private const int SocketBufferBytes = 4 * 1024 * 1024;

    /// <summary>An unconnected socket for <paramref name="endpoint"/> and the address to connect it to.</summary>
    public static Socket Create(GrpcEndpoint endpoint, out EndPoint target)
    {
        Socket socket;
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
            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }
}
