using UblkCsi.BlockStoreServer.Tests.Support;
using UblkCsi.GrpcHosting;
using UblkCsi.Stores;
using UblkCsi.Stores.Rpc;

namespace UblkCsi.BlockStoreServer.Tests;

/// <summary>Options, start, serving and graceful stop of the real server entry point.</summary>
public sealed class HostTests
{
    [Theory]
    [InlineData(new[] { "--root", "/tmp" }, "--listen: is required (or set BLOCKSTORE_LISTEN)")]
    [InlineData(new[] { "--listen", "tcp://127.0.0.1:1" }, "--root: is required (or set BLOCKSTORE_ROOT)")]
    [InlineData(new[] { "--listen", "http://x:1", "--root", "/tmp" }, "--listen: endpoint 'http://x:1' has an unsupported scheme")]
    [InlineData(new[] { "--listen", "tcp://127.0.0.1:1", "--root", "relative" }, "--root: 'relative' is not an absolute path")]
    [InlineData(new[] { "--listen", "tcp://127.0.0.1:1", "--root", "/nonexistent/ublk" }, "--root: directory '/nonexistent/ublk' does not exist")]
    [InlineData(new[] { "--listen", "tcp://127.0.0.1:1", "--root", "/tmp", "--reflink", "maybe" }, "--reflink: 'maybe' is not a reflink mode; allowed: auto, always, never")]
    [InlineData(new[] { "--listen", "tcp://127.0.0.1:1", "--root", "/tmp", "--direct-io", "sometimes" }, "--direct-io: 'sometimes' is not a direct-io mode; allowed: off, auto, on")]
    [InlineData(new[] { "--listen", "tcp://127.0.0.1:1", "--root", "/tmp", "--token-file", "token.txt" }, "--token-file: 'token.txt' is not an absolute path")]
    [InlineData(new[] { "--listen", "tcp://127.0.0.1:1", "--root", "/tmp", "--shutdown-timeout", "-1" }, "--shutdown-timeout: '-1' is not a number of seconds")]
    [InlineData(new[] { "--port", "9400" }, "--port: unknown option")]
    public async Task InvalidOptionsPrintOneLineNamingTheOptionAndExitWith2(string[] args, string expected)
    {
        var (exit, _, error) = await InProcessHost.RunToExitAsync(args);

        Assert.Equal(2, exit);
        Assert.StartsWith("ublk-blockstore-server: " + expected, error);
        Assert.Single(error.TrimEnd('\n').Split('\n'));
    }

    [Fact]
    public async Task HelpListsEveryOptionWithItsEnvironmentVariable()
    {
        var (exit, output, _) = await InProcessHost.RunToExitAsync("--help");

        Assert.Equal(0, exit);
        foreach (var expected in new[] { "--listen", "[env BLOCKSTORE_LISTEN]", "--root", "[env BLOCKSTORE_ROOT]", "--token-file", "[env BLOCKSTORE_TOKEN_FILE]" })
        {
            Assert.Contains(expected, output);
        }
    }

    [Fact]
    public async Task UnreadableTokenFileFailsTheStartWithExit1()
    {
        var root = TestPaths.NewDirectory("root");
        var (exit, _, error) = await InProcessHost.RunToExitAsync("--listen", "tcp://127.0.0.1:0", "--root", root, "--token-file", Path.Combine(root, "missing"));

        Assert.Equal(1, exit);
        Assert.Contains("cannot start: cannot read the token file", error);
    }

    [Fact]
    public async Task ServesTheRootOverTcpAndStopsGracefullyWithEverythingFlushed()
    {
        var root = TestPaths.NewDirectory("root");
        var host = await InProcessHost.StartAsync(["--listen", "tcp://127.0.0.1:0", "--root", root]);
        var data = new byte[256 * 1024];
        Random.Shared.NextBytes(data);

        await using (var store = new RpcStore(new RpcStoreOptions(host.Endpoint)))
        {
            var info = await store.GetServerInfoAsync();
            Assert.StartsWith("ublk-blockstore-server ", info.ServerVersion);
            Assert.Equal((uint)BlockStoreProtocol.MaxPayloadBytes, info.MaxPayloadBytes);
            Assert.Equal($"file root={root}", info.StoreDescription);

            var volume = await store.CreateVolumeAsync(new CreateVolumeRequest("pvc-host", 8 << 20));
            await using var backend = await store.OpenVolumeAsync(volume.Id);
            await backend.WriteAsync(1 << 20, data);
        }

        Assert.Equal(0, await host.StopAsync());
        Assert.Contains("stopped; open volumes flushed and closed", host.Logs.Text);

        // The bytes are in the file store's image, where a new server (or the file store itself) finds them.
        var image = await File.ReadAllBytesAsync(Path.Combine(root, "volumes", "pvc-host.img"));
        Assert.Equal(data, image.AsSpan(1 << 20, data.Length).ToArray());
    }

    [Fact]
    public async Task ServesOnAUnixSocketAndRemovesItOnStop()
    {
        var root = TestPaths.NewDirectory("root");
        var socket = Path.Combine(root, "blockstore.sock");
        var host = await InProcessHost.StartAsync(["--listen", "unix://" + socket, "--root", root]);
        Assert.True(File.Exists(socket));

        await using (var store = StoreRegistry.Open("rpc", new Dictionary<string, string> { ["endpoint"] = "unix://" + socket }))
        {
            await store.CreateVolumeAsync(new CreateVolumeRequest("over-unix", 1 << 20));
            Assert.Equal(["over-unix"], (await store.ListVolumesAsync()).Select(v => v.Id));
        }

        Assert.Equal(0, await host.StopAsync());
        Assert.False(File.Exists(socket));
    }
}
