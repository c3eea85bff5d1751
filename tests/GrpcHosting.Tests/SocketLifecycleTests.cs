using UblkCsi.GrpcEndpoints;
using Grpc.Core;
using UblkCsi.TestSupport;
using System.Net.Sockets;
using Ublkcsi.Testing.V1;

namespace UblkCsi.GrpcHosting.Tests;

/// <summary>The unix socket file across process deaths, competing servers and shutdown.</summary>
public sealed class SocketLifecycleTests
{
    [Fact]
    public async Task StaleSocketFileFromADeadProcessIsReplaced()
    {
        var directory = TestServer.NewSocketDirectory();
        var path = Path.Combine(directory, "grpc.sock");
        DeadSocket.LeaveBehind(path);

        Assert.True(File.Exists(path));

        await using var server = await TestServer.StartAsync(directory: directory);
        var response = await server.EchoAsync(new EchoRequest { Text = "after stale" });

        Assert.Equal("after stale", response.Text);
        Assert.Contains(server.Logs.Entries, e => e.Message.Contains("removed stale socket", StringComparison.Ordinal));
    }

    [Fact]
    public async Task LiveServerOnTheSameSocketIsNotTakenOver()
    {
        await using var first = await TestServer.StartAsync();
        var loggerFactory = CapturingLoggerProvider.CreateFactory(out _);
        await using var second = new GrpcServer(new GrpcServerOptions { Endpoint = first.Server.Endpoint }, loggerFactory);
        EchoService.Serve(second, new EchoService());

        var e = await Assert.ThrowsAsync<IOException>(() => second.StartAsync());

        Assert.Contains("another process is serving", e.Message);
        Assert.Equal("still here", (await first.EchoAsync(new EchoRequest { Text = "still here" })).Text);
    }

    [Fact]
    public async Task RegularFileAtTheSocketPathIsNeverDeleted()
    {
        var directory = TestServer.NewSocketDirectory();
        var path = Path.Combine(directory, "grpc.sock");
        await File.WriteAllTextAsync(path, "precious");
        var loggerFactory = CapturingLoggerProvider.CreateFactory(out _);
        await using var server = new GrpcServer(new GrpcServerOptions { Endpoint = GrpcEndpoint.Unix(path) }, loggerFactory);

        var e = await Assert.ThrowsAsync<IOException>(() => server.StartAsync());

        Assert.Contains("not a unix socket", e.Message);
        Assert.Equal("precious", await File.ReadAllTextAsync(path));
        Directory.Delete(directory, recursive: true);
    }

    [Fact]
    public async Task MissingDirectoryIsAClearError()
    {
        var loggerFactory = CapturingLoggerProvider.CreateFactory(out _);
        await using var server = new GrpcServer(new GrpcServerOptions { Endpoint = GrpcEndpoint.Unix("/tmp/no-such-dir-" + Guid.NewGuid().ToString("N")[..8] + "/x.sock") }, loggerFactory);

        var e = await Assert.ThrowsAsync<IOException>(() => server.StartAsync());

        Assert.Contains("does not exist", e.Message);
    }

    [Fact]
    public async Task GracefulStopFinishesInFlightCallsAndRemovesTheSocket()
    {
        var server = await TestServer.StartAsync();
        var slow = server.Channel.CallAsync<EchoRequest, EchoResponse>(
            EchoService.Descriptor.FindMethodByName("Slow"), new EchoRequest { Text = "in flight", DelayMs = 700 });
        // Stop only once the server runs the call: a fixed pause lost the race on a loaded host (the
        // call had not connected when the socket went away).
        await server.Service.SlowCallStarted.Task.WaitAsync(TimeSpan.FromSeconds(30));

        await server.Server.StopAsync();

        Assert.Equal("in flight", (await slow).Text);
        Assert.Equal(1, server.Service.SlowCallsFinished);
        Assert.False(File.Exists(server.SocketPath));
        await server.DisposeAsync();
    }
}
