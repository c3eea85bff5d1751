using System.Diagnostics;
using Google.Protobuf;
using Ublkcsi.Testing.V1;

namespace UblkCsi.GrpcHosting.Tests;

/// <summary>Real gRPC over a real unix socket: the happy path and every wire-level failure.</summary>
public sealed class GrpcServerWireTests
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
        using var client = new GrpcClient(server.Server.Endpoint, new GrpcClientOptions { MaxReceiveMessageBytes = 32 * 1024 * 1024 });
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

        var method = await Assert.ThrowsAsync<RpcException>(() =>
            server.Client.CallAsync<EchoRequest, EchoResponse>("/ublkcsi.testing.v1.Echo/Nope", new EchoRequest()));
        var service = await Assert.ThrowsAsync<RpcException>(() =>
            server.Client.CallAsync<EchoRequest, EchoResponse>("/no.Such/Method", new EchoRequest()));

        Assert.Equal(StatusCode.Unimplemented, method.StatusCode);
        Assert.Contains("/ublkcsi.testing.v1.Echo/Nope", method.Detail);
        Assert.Equal(StatusCode.Unimplemented, service.StatusCode);
        Assert.Contains("unknown service no.Such", service.Detail);
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
        Assert.Contains("1024", e.Detail);
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
    public async Task TruncatedMessageIsInternal()
    {
        await using var server = await TestServer.StartAsync();
        var frame = Frames.Of(new byte[10], declaredLength: 100);

        var result = await server.RawCallAsync(EchoPath, frame);

        Assert.Equal("13", result.GrpcStatus);
        Assert.Contains("10 of 100", result.GrpcMessage);
    }

    [Fact]
    public async Task TruncatedHeaderIsInternal()
    {
        await using var server = await TestServer.StartAsync();

        var result = await server.RawCallAsync(EchoPath, [0, 0, 0]);

        Assert.Equal("13", result.GrpcStatus);
    }

    [Fact]
    public async Task CompressedFlagWithoutEncodingIsUnimplemented()
    {
        await using var server = await TestServer.StartAsync();
        var compressed = Frames.Of(Frames.Gzip(new EchoRequest { Text = "z" }.ToByteArray()), compressedFlag: 1);

        var result = await server.RawCallAsync(EchoPath, compressed);

        Assert.Equal("12", result.GrpcStatus);
    }

    [Fact]
    public async Task UnknownEncodingIsUnimplementedAndAdvertisesSupportedEncodings()
    {
        await using var server = await TestServer.StartAsync();

        var result = await server.RawCallAsync(EchoPath, Frames.Of(new EchoRequest()), ("grpc-encoding", "snappy"));

        Assert.Equal("12", result.GrpcStatus);
        Assert.Equal("identity,gzip", result.AcceptEncoding);
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
    public async Task MalformedProtobufIsInternal()
    {
        await using var server = await TestServer.StartAsync();

        // Field 1 as length-delimited with a length running past the end.
        var result = await server.RawCallAsync(EchoPath, Frames.Of([0x0A, 0x7F, 0x41]));

        Assert.Equal("13", result.GrpcStatus);
        Assert.Contains("not valid protobuf", result.GrpcMessage);
    }

    [Fact]
    public async Task EmptyBodyIsInternal()
    {
        await using var server = await TestServer.StartAsync();

        var result = await server.RawCallAsync(EchoPath, []);

        Assert.Equal("13", result.GrpcStatus);
        Assert.Contains("no message", result.GrpcMessage);
    }

    [Fact]
    public async Task TwoMessagesOnAUnaryCallAreInternal()
    {
        await using var server = await TestServer.StartAsync();
        var one = Frames.Of(new EchoRequest { Text = "a" });

        var result = await server.RawCallAsync(EchoPath, [.. one, .. one]);

        Assert.Equal("13", result.GrpcStatus);
        Assert.Contains("more than one", result.GrpcMessage);
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

        var e = await Assert.ThrowsAsync<RpcException>(() => server.Client.CallAsync<EchoRequest, EchoResponse>(
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
    public async Task MalformedGrpcTimeoutIsInternal()
    {
        await using var server = await TestServer.StartAsync();

        var result = await server.RawCallAsync(EchoPath, Frames.Of(new EchoRequest()), ("grpc-timeout", "12x"));

        Assert.Equal("13", result.GrpcStatus);
    }

    [Fact]
    public async Task RpcExceptionFromHandlerReachesTheClientWithItsMessage()
    {
        await using var server = await TestServer.StartAsync();
        const string Detail = "volume ünïcode 100% \"missing\"\nline two";

        var e = await Assert.ThrowsAsync<RpcException>(() => server.Client.CallAsync<EchoRequest, EchoResponse>(
            EchoService.Descriptor.FindMethodByName("Fail"), new EchoRequest { FailWith = "rpc", Text = Detail }));

        Assert.Equal(StatusCode.NotFound, e.StatusCode);
        Assert.Equal(Detail, e.Detail);
    }

    [Fact]
    public async Task HandlerExceptionIsInternalWithoutDetailsOnTheWire()
    {
        await using var server = await TestServer.StartAsync();

        var result = await server.RawCallAsync("/ublkcsi.testing.v1.Echo/Fail", Frames.Of(new EchoRequest { Text = "kaboom-detail" }));

        Assert.Equal("13", result.GrpcStatus);
        Assert.Equal("internal server error", result.GrpcMessage);
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
        using var client = new GrpcClient(server.Endpoint);

        var response = await client.CallAsync<EchoRequest, EchoResponse>(EchoService.Descriptor.FindMethodByName("Echo"), new EchoRequest { Text = "tcp" });

        Assert.NotEqual(0, server.Endpoint.Port);
        Assert.Equal("tcp", response.Text);
    }

    [Fact]
    public async Task ClientReportsUnavailableWhenNothingListens()
    {
        var directory = TestServer.NewSocketDirectory();
        using var client = new GrpcClient(GrpcEndpoint.Unix(Path.Combine(directory, "absent.sock")));

        var e = await Assert.ThrowsAsync<RpcException>(() =>
            client.CallAsync<EchoRequest, EchoResponse>(EchoService.Descriptor.FindMethodByName("Echo"), new EchoRequest()));

        Assert.Equal(StatusCode.Unavailable, e.StatusCode);
        Directory.Delete(directory);
    }
}
