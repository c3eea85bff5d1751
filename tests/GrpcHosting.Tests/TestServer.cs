using UblkCsi.GrpcEndpoints;
using System.Net;
using System.Net.Sockets;
using Grpc.Net.Client;
using Microsoft.Extensions.Logging;
using UblkCsi.TestSupport;
using UblkCsi.GrpcHosting.Logging;
using Ublkcsi.Testing.V1;

namespace UblkCsi.GrpcHosting.Tests;

/// <summary>A real GrpcServer on a unix socket in a fresh temp directory, with a client and captured logs.</summary>
public sealed class TestServer : IAsyncDisposable
{
    private readonly ILoggerFactory _loggerFactory;

    private TestServer(string directory, GrpcServer server, ILoggerFactory loggerFactory, CapturingLoggerProvider logs, EchoService service)
    {
        Directory = directory;
        Server = server;
        _loggerFactory = loggerFactory;
        Logs = logs;
        Service = service;
        Channel = GrpcChannels.Create(server.Endpoint);
    }

    public string Directory { get; }

    public GrpcServer Server { get; }

    public GrpcChannel Channel { get; }

    public CapturingLoggerProvider Logs { get; }

    public EchoService Service { get; }

    public string SocketPath => Server.Endpoint.UnixPath!;

    public static string NewSocketDirectory()
    {
        // Short paths: sun_path holds at most 107 bytes.
        var directory = Path.Combine("/tmp", "grpct-" + Guid.NewGuid().ToString("N")[..12]);
        System.IO.Directory.CreateDirectory(directory);
        return directory;
    }

    public static async Task<TestServer> StartAsync(int maxReceiveMessageBytes = 4 * 1024 * 1024, string? directory = null)
    {
        directory ??= NewSocketDirectory();
        var loggerFactory = CapturingLoggerProvider.CreateFactory(out var logs);
        var service = new EchoService();
        var server = new GrpcServer(
            new GrpcServerOptions
            {
                Endpoint = GrpcEndpoint.Unix(Path.Combine(directory, "grpc.sock")),
                MaxReceiveMessageBytes = maxReceiveMessageBytes,
                SensitiveFields = new SensitiveFieldPolicy(TestingExtensions.TestSensitive, Csi.V1.CsiExtensions.CsiSecret),
                ShutdownTimeout = TimeSpan.FromSeconds(10),
            },
            loggerFactory);
        EchoService.Serve(server, service);
        await server.StartAsync();
        return new TestServer(directory, server, loggerFactory, logs, service);
    }

    public Task<EchoResponse> EchoAsync(EchoRequest request, DateTime? deadline = null) =>
        Channel.CallAsync<EchoRequest, EchoResponse>(EchoService.Descriptor.FindMethodByName("Echo"), request, deadline);

    /// <summary>
    /// Sends an arbitrary body to a path, as a broken client would, and returns the gRPC status
    /// from the headers (trailers-only) or the trailers.
    /// </summary>
    public async Task<RawResult> RawCallAsync(string path, byte[] body, params (string Name, string Value)[] headers)
    {
        using var handler = new SocketsHttpHandler
        {
            ConnectCallback = async (_, ct) =>
            {
                var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                await socket.ConnectAsync(new UnixDomainSocketEndPoint(SocketPath), ct);
                return new NetworkStream(socket, ownsSocket: true);
            },
        };
        using var http = new HttpClient(handler) { DefaultRequestVersion = HttpVersion.Version20, DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact };
        using var request = new HttpRequestMessage(HttpMethod.Post, "http://localhost" + path) { Content = new ByteArrayContent(body), Version = HttpVersion.Version20, VersionPolicy = HttpVersionPolicy.RequestVersionExact };
        request.Content.Headers.TryAddWithoutValidation("Content-Type", "application/grpc");
        request.Headers.TryAddWithoutValidation("te", "trailers");
        foreach (var (name, value) in headers)
        {
            request.Headers.TryAddWithoutValidation(name, value);
        }

        using var response = await http.SendAsync(request);
        var responseBody = await response.Content.ReadAsByteArrayAsync();
        string? Header(string name) =>
            response.Headers.TryGetValues(name, out var v) ? v.First()
            : response.TrailingHeaders.TryGetValues(name, out var t) ? t.First()
            : null;

        return new RawResult(
            (int)response.StatusCode,
            Header("grpc-status"),
            Header("grpc-message"),
            response.Headers.TryGetValues("grpc-status", out _),
            Header("grpc-accept-encoding"),
            responseBody);
    }

    public async ValueTask DisposeAsync()
    {
        Channel.Dispose();
        await Server.DisposeAsync();
        _loggerFactory.Dispose();
        try
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}

public sealed record RawResult(int HttpStatus, string? GrpcStatus, string? GrpcMessage, bool TrailersOnly, string? AcceptEncoding, byte[] Body);
