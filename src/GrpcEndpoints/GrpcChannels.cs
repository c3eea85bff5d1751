using System.Net.Security;
using System.Net.Sockets;
using Grpc.Net.Client;

namespace UblkCsi.GrpcEndpoints;

/// <summary>Settings of a client channel made by <see cref="GrpcChannels"/>.</summary>
public sealed record GrpcChannelSettings
{
    /// <summary>Largest response message accepted. Default 4 MiB, gRPC's own default.</summary>
    public int MaxReceiveMessageBytes { get; init; } = 4 * 1024 * 1024;

    /// <summary>How long opening one connection may take. Default 5 s.</summary>
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Idle time after which the client pings the server, so a dead peer (a server host that vanished
    /// without a FIN) is noticed in seconds instead of at the next TCP timeout. Default 15 s.
    /// </summary>
    public TimeSpan KeepAlivePingDelay { get; init; } = TimeSpan.FromSeconds(15);

    /// <summary>How long a keep-alive ping may stay unanswered before the connection is dropped. Default 10 s.</summary>
    public TimeSpan KeepAlivePingTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>TLS for TCP endpoints (https), or null for cleartext HTTP/2 with prior knowledge.</summary>
    public SslClientAuthenticationOptions? Tls { get; init; }
}

/// <summary>
/// Makes Grpc.Net.Client channels for <see cref="GrpcEndpoint"/>s: unix sockets through a connect
/// callback, TCP directly; HTTP/2 keep-alive pings; several HTTP/2 connections when one is full of
/// streams; a dropped connection is replaced on the next call (the library reconnects; callers retry).
/// </summary>
public static class GrpcChannels
{
    /// <summary>A channel to <paramref name="endpoint"/>. Dispose it to close its connections.</summary>
    public static GrpcChannel Create(GrpcEndpoint endpoint, GrpcChannelSettings? settings = null)
    {
        ArgumentNullException.ThrowIfNull(endpoint);
        settings ??= new GrpcChannelSettings();
        var handler = new SocketsHttpHandler
        {
            ConnectTimeout = settings.ConnectTimeout,
            KeepAlivePingDelay = settings.KeepAlivePingDelay,
            KeepAlivePingTimeout = settings.KeepAlivePingTimeout,
            KeepAlivePingPolicy = HttpKeepAlivePingPolicy.WithActiveRequests,
            EnableMultipleHttp2Connections = true,
            PooledConnectionIdleTimeout = Timeout.InfiniteTimeSpan,
        };

        Uri address;
        if (endpoint.Kind == GrpcEndpointKind.Unix)
        {
            var path = endpoint.UnixPath!;
            handler.ConnectCallback = async (_, cancellationToken) =>
            {
                var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                try
                {
                    await socket.ConnectAsync(new UnixDomainSocketEndPoint(path), cancellationToken).ConfigureAwait(false);
                    return new NetworkStream(socket, ownsSocket: true);
                }
                catch
                {
                    socket.Dispose();
                    throw;
                }
            };
            address = new Uri("http://localhost");
        }
        else
        {
            var host = endpoint.Host!.Contains(':', StringComparison.Ordinal) ? "[" + endpoint.Host + "]" : endpoint.Host;
            if (settings.Tls is { } tls)
            {
                handler.SslOptions = tls;
            }

            address = new Uri($"{(settings.Tls is null ? "http" : "https")}://{host}:{endpoint.Port}");
        }

        return GrpcChannel.ForAddress(address, new GrpcChannelOptions
        {
            HttpHandler = handler,
            DisposeHttpClient = true,
            MaxReceiveMessageSize = settings.MaxReceiveMessageBytes,
            MaxSendMessageSize = null,
            Credentials = settings.Tls is null ? Grpc.Core.ChannelCredentials.Insecure : Grpc.Core.ChannelCredentials.SecureSsl,
        });
    }
}
