using UblkCsi.GrpcEndpoints;
using System.Diagnostics;
using Google.Protobuf;
using Grpc.Core;
using UblkCsi.TestSupport;
using Ublkcsi.Testing.V1;

namespace UblkCsi.GrpcHosting.Tests;

/// <summary>Real gRPC (Grpc.AspNetCore behind GrpcServer, Grpc.Net.Client) over real sockets: the happy path and every failure the hosts rely on.</summary>
public sealed class GrpcServerTests
{
    private const string EchoPath = "/ublkcsi.testing.v1.Echo/Echo";

    [Fact]
    public async Task UnaryCallRoundTripsTextAndPayload()
    {
        await using var server = await TestServer.StartAsync();
        var payload = EchoService.Bytes(256 * 1024);

        var response = await server.EchoAsync(new EchoRequest { Text = "hello", Payload = payload });

        Assert.Equal("hello", response.Text);
        Assert.Equal(payload, response.Payload);
    }

    [Fact]
    public async Task MessagesLargerThanTheHttp2WindowsRoundTrip()
    {
        // 20 MiB exceeds both the server's stream window and the client's: flow control must keep moving.
        await using var server = await TestServer.StartAsync(maxReceiveMessageBytes: 32 * 1024 * 1024);
        using var client = GrpcChannels.Create(server.Server.Endpoint, new GrpcChannelSettings { MaxReceiveMessageBytes = 32 * 1024 * 1024 });
        var payload = EchoService.Bytes(20 * 1024 * 1024);

        var response = await client.CallAsync<EchoRequest, EchoResponse>(
            EchoService.Descriptor.FindMethodByName("Echo"), new EchoRequest { Payload = payload }, DateTime.UtcNow.AddSeconds(60));

        Assert.Equal(payload, response.Payload);
    }

    [Fact]
    public async Task SuccessfulResponseCarriesGrpcContentTypeAndStatusInTrailers()
    {
        await using var server = await TestServer.StartAsync();

        var result = await server.RawCallAsync(EchoPath, Frames.Of(new EchoRequest { Text = "x" }));

        Assert.Equal(200, result.HttpStatus);
        Assert.False(result.TrailersOnly);
        Assert.Equal("0", result.GrpcStatus);
        var response = EchoResponse.Parser.ParseFrom(result.Body.AsSpan(5));
        Assert.Equal("x", response.Text);
    }

    [Fact]
    public async Task UnknownMethodAndServiceAreUnimplemented()
    {
        await using var server = await TestServer.StartAsync();

        var method = await server.RawCallAsync("/ublkcsi.testing.v1.Echo/Nope", Frames.Of(new EchoRequest()));
        var service = await server.RawCallAsync("/no.Such/Method", Frames.Of(new EchoRequest()));

        Assert.Equal("12", method.GrpcStatus);
        Assert.Equal("12", service.GrpcStatus);
    }

    [Fact]
    public async Task DeclaredUnimplementedStreamingMethodAnswersUnimplemented()
    {
        await using var server = await TestServer.StartAsync();

        var result = await server.RawCallAsync("/ublkcsi.testing.v1.Echo/Watch", Frames.Of(new EchoRequest()));

        Assert.Equal("12", result.GrpcStatus);
        Assert.True(result.TrailersOnly);
    }

    [Fact]
    public async Task OversizedMessageIsResourceExhausted()
    {
        await using var server = await TestServer.StartAsync(maxReceiveMessageBytes: 1024);

        var e = await Assert.ThrowsAsync<RpcException>(() => server.EchoAsync(new EchoRequest { Payload = EchoService.Bytes(2000) }));

        Assert.Equal(StatusCode.ResourceExhausted, e.StatusCode);
    }

    [Fact]
    public async Task MultiMegabyteMessageOverTheLimitIsResourceExhaustedWhileTheClientIsStillSending()
    {
        await using var server = await TestServer.StartAsync(maxReceiveMessageBytes: 1024 * 1024);

        var e = await Assert.ThrowsAsync<RpcException>(() => server.EchoAsync(new EchoRequest { Payload = EchoService.Bytes(24 * 1024 * 1024) }));

        Assert.Equal(StatusCode.ResourceExhausted, e.StatusCode);
        Assert.Equal("ok", (await server.EchoAsync(new EchoRequest { Text = "ok" })).Text);
    }

    [Fact]
    public async Task OversizedDeclaredLengthIsRejectedBeforeTheBodyArrives()
    {
        await using var server = await TestServer.StartAsync(maxReceiveMessageBytes: 1024);

        // Only the header is sent; it claims 100 MB.
        var result = await server.RawCallAsync(EchoPath, Frames.Of([], declaredLength: 100_000_000));

        Assert.Equal("8", result.GrpcStatus);
        Assert.True(result.TrailersOnly);
    }

    [Fact]
    public async Task GzipCompressedRequestIsDecoded()
    {
        await using var server = await TestServer.StartAsync();
        var request = new EchoRequest { Text = "compressed", Payload = EchoService.Bytes(10_000) };
        var frame = Frames.Of(Frames.Gzip(request.ToByteArray()), compressedFlag: 1);

        var result = await server.RawCallAsync(EchoPath, frame, ("grpc-encoding", "gzip"));

        Assert.Equal("0", result.GrpcStatus);
        Assert.Equal("compressed", EchoResponse.Parser.ParseFrom(result.Body.AsSpan(5)).Text);
    }

    [Fact]
    public async Task GzipBombBeyondTheLimitIsResourceExhausted()
    {
        await using var server = await TestServer.StartAsync(maxReceiveMessageBytes: 64 * 1024);
        var request = new EchoRequest { Payload = ByteString.CopyFrom(new byte[1024 * 1024]) };
        var frame = Frames.Of(Frames.Gzip(request.ToByteArray()), compressedFlag: 1);
        Assert.True(frame.Length < 64 * 1024);

        var result = await server.RawCallAsync(EchoPath, frame, ("grpc-encoding", "gzip"));

        Assert.Equal("8", result.GrpcStatus);
    }

    [Fact]
    public async Task NonGrpcContentTypeIsHttp415()
    {
        await using var server = await TestServer.StartAsync();
        using var http = new HttpClient(new SocketsHttpHandler
        {
            ConnectCallback = async (_, ct) =>
            {
                var s = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Unspecified);
                await s.ConnectAsync(new System.Net.Sockets.UnixDomainSocketEndPoint(server.SocketPath), ct);
                return new System.Net.Sockets.NetworkStream(s, true);
            },
        })
        { DefaultRequestVersion = System.Net.HttpVersion.Version20, DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact };

        using var request = new HttpRequestMessage(HttpMethod.Post, "http://localhost" + EchoPath)
        {
            Content = new StringContent("{}", System.Text.Encoding.UTF8, "application/json"),
            Version = System.Net.HttpVersion.Version20,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
        };
        using var response = await http.SendAsync(request);

        Assert.Equal(415, (int)response.StatusCode);
    }

    [Fact]
    public async Task ExpiredDeadlineIsDeadlineExceeded()
    {
        await using var server = await TestServer.StartAsync();
        var watch = Stopwatch.StartNew();

        var e = await Assert.ThrowsAsync<RpcException>(() => server.Channel.CallAsync<EchoRequest, EchoResponse>(
            EchoService.Descriptor.FindMethodByName("Slow"), new EchoRequest { DelayMs = 10_000 }, DateTime.UtcNow.AddMilliseconds(200)));

        Assert.Equal(StatusCode.DeadlineExceeded, e.StatusCode);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(5), $"took {watch.Elapsed}");
    }

    [Theory]
    [InlineData("200m")]
    [InlineData("200000u")]
    [InlineData("99999999n")]
    public async Task ServerEnforcesGrpcTimeoutEvenWhenTheHandlerIgnoresCancellation(string timeout)
    {
        await using var server = await TestServer.StartAsync();
        var watch = Stopwatch.StartNew();

        // No client-side deadline: only the server's enforcement can end this call early.
        var result = await server.RawCallAsync("/ublkcsi.testing.v1.Echo/Slow",
            Frames.Of(new EchoRequest { DelayMs = 5_000, IgnoreCancellation = true }), ("grpc-timeout", timeout));

        Assert.Equal("4", result.GrpcStatus);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(3), $"took {watch.Elapsed}");
    }

    [Fact]
    public async Task RpcExceptionFromHandlerReachesTheClientWithItsMessage()
    {
        await using var server = await TestServer.StartAsync();
        const string Detail = "volume ünïcode 100% \"missing\"\nline two";

        var e = await Assert.ThrowsAsync<RpcException>(() => server.Channel.CallAsync<EchoRequest, EchoResponse>(
            EchoService.Descriptor.FindMethodByName("Fail"), new EchoRequest { FailWith = "rpc", Text = Detail }));

        Assert.Equal(StatusCode.NotFound, e.StatusCode);
        Assert.Equal(Detail, e.Status.Detail);
    }

    [Fact]
    public async Task HandlerExceptionIsInternalWithoutDetailsOnTheWire()
    {
        await using var server = await TestServer.StartAsync();

        var result = await server.RawCallAsync("/ublkcsi.testing.v1.Echo/Fail", Frames.Of(new EchoRequest { Text = "kaboom-detail" }));

        Assert.Equal("13", result.GrpcStatus);
        Assert.Equal("internal error; the server log has the details", result.GrpcMessage);
        Assert.True(result.TrailersOnly);
        Assert.Empty(result.Body);
        var logged = Assert.Single(server.Logs.Entries, e => e.Exception is not null);
        Assert.Contains("kaboom-detail", logged.Exception);
        Assert.Contains(nameof(EchoService.Fail), logged.Exception);
    }

    [Fact]
    public async Task HundredConcurrentCallsAllSucceed()
    {
        await using var server = await TestServer.StartAsync();

        var calls = Enumerable.Range(0, 100).Select(async i =>
        {
            var payload = EchoService.Bytes(1000 + i, (byte)i);
            var response = await server.EchoAsync(new EchoRequest { Text = "call-" + i, Payload = payload });
            Assert.Equal("call-" + i, response.Text);
            Assert.Equal(payload, response.Payload);
        });

        await Task.WhenAll(calls);
    }

    [Fact]
    public async Task ServerOnTcpWithAnEphemeralPortServesCalls()
    {
        var loggerFactory = CapturingLoggerProvider.CreateFactory(out _);
        await using var server = new GrpcServer(new GrpcServerOptions { Endpoint = GrpcEndpoint.Tcp("127.0.0.1", 0) }, loggerFactory);
        EchoService.Serve(server, new EchoService());
        await server.StartAsync();
        using var client = GrpcChannels.Create(server.Endpoint);

        var response = await client.CallAsync<EchoRequest, EchoResponse>(EchoService.Descriptor.FindMethodByName("Echo"), new EchoRequest { Text = "tcp" });

        Assert.NotEqual(0, server.Endpoint.Port);
        Assert.Equal("tcp", response.Text);
    }

    [Fact]
    public async Task ClientReportsUnavailableWhenNothingListens()
    {
        var directory = TestServer.NewSocketDirectory();
        using var client = GrpcChannels.Create(GrpcEndpoint.Unix(Path.Combine(directory, "absent.sock")));

        var e = await Assert.ThrowsAsync<RpcException>(() =>
            client.CallAsync<EchoRequest, EchoResponse>(EchoService.Descriptor.FindMethodByName("Echo"), new EchoRequest()));

        Assert.Equal(StatusCode.Unavailable, e.StatusCode);
        Directory.Delete(directory);
    }
}
