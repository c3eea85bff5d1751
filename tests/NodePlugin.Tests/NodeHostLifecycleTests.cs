using UblkCsi.GrpcEndpoints;
using Csi.V1;
using UblkCsi.GrpcHosting;
using UblkCsi.TestSupport;

namespace UblkCsi.NodePlugin.Tests;

/// <summary>Options, start and stop of the node plugin, in-process and as a real process.</summary>
public sealed class NodeHostLifecycleTests
{
    [Fact]
    public async Task MissingNodeIdNamesTheOptionAndItsVariable()
    {
        var (exit, error, _) = await RunningHost.RunToExitAsync(i => NodeHost.RunAsync(i, system: FakeNode.HostSystem), ["--endpoint", "unix:///tmp/unused.sock"]);

        Assert.Equal(2, exit);
        Assert.Equal("ublk-csi-node: --node-id: is required (or set NODE_ID)", error.TrimEnd('\n'));
    }

    [Theory]
    [InlineData("--state-dir", "relative/dir", "--state-dir: 'relative/dir' must be an absolute path")]
    [InlineData("--state-dir", "/var/lib/../etc", "--state-dir: '/var/lib/../etc' must not contain '.' or '..' segments")]
    [InlineData("--node-id", "node a", "--node-id: 'node a' must not contain whitespace")]
    public async Task InvalidNodeOptionPrintsOneLineAndExitsWith2(string option, string value, string expected)
    {
        string[] args = option == "--node-id" ? [option, value] : ["--node-id", "n1", option, value];

        var (exit, error, _) = await RunningHost.RunToExitAsync(i => NodeHost.RunAsync(i, system: FakeNode.HostSystem), args);

        Assert.Equal(2, exit);
        Assert.StartsWith("ublk-csi-node: " + expected, error);
        Assert.Single(error.TrimEnd('\n').Split('\n'));
    }

    [Fact]
    public async Task OverlongNodeIdIsRejected()
    {
        var (exit, error, _) = await RunningHost.RunToExitAsync(i => NodeHost.RunAsync(i, system: FakeNode.HostSystem), ["--node-id", new string('n', 257)]);

        Assert.Equal(2, exit);
        Assert.Contains("--node-id: must be at most 256 bytes", error);
    }

    [Fact]
    public async Task NodeIdFromEnvironmentIsAccepted()
    {
        var directory = RunningHost.NewDirectory();
        var environment = new Dictionary<string, string?> { ["NODE_ID"] = "node-from-env", ["STATE_DIR"] = Path.Combine(directory, "st") };

        await using var host = await RunningHost.StartAsync(i => NodeHost.RunAsync(i, system: FakeNode.HostSystem), [], environment, directory);

        Assert.True(Directory.Exists(Path.Combine(directory, "st")));
    }

    [Fact]
    public async Task StaleSocketDoesNotBlockStartAndStopRemovesIt()
    {
        var directory = RunningHost.NewDirectory();
        DeadSocket.LeaveBehind(Path.Combine(directory, "csi.sock"));
        var host = await RunningHost.StartAsync(i => NodeHost.RunAsync(i, system: FakeNode.HostSystem), ["--node-id", "n1", "--state-dir", Path.Combine(directory, "state")], directory: directory);

        var info = await host.CallAsync<GetPluginInfoRequest, GetPluginInfoResponse>(CsiServices.Identity.FindMethodByName("GetPluginInfo"), new GetPluginInfoRequest());
        Assert.Equal("ublk.csi.storage", info.Name);

        Assert.Equal(0, await host.StopAsync());
        Assert.False(File.Exists(host.SocketPath));
        await host.DisposeAsync();
    }

    [Fact]
    public async Task RealProcessRefusesAKubeletDirectoryThatIsNotShared()
    {
        var directory = RunningHost.NewDirectory();
        using var process = HostProcess.Start(
            NodeHost.Program,
            ["--endpoint", "unix://" + Path.Combine(directory, "csi.sock"), "--state-dir", Path.Combine(directory, "state"), "--kubelet-dir", directory],
            new Dictionary<string, string> { ["NODE_ID"] = "node-proc" });

        Assert.Equal(1, await process.WaitForExitAsync(TimeSpan.FromSeconds(30)));
        Assert.Contains($"the kubelet directory {directory} is not a shared mount", process.Stderr);
        Assert.Contains("mountPropagation: Bidirectional", process.Stderr);
        Directory.Delete(directory, recursive: true);
    }

    [Fact]
    public async Task RealProcessStopsCleanlyOnSigterm()
    {
        var directory = RunningHost.NewDirectory();
        var socket = Path.Combine(directory, "csi.sock");
        var kubelet = Path.Combine(directory, "kubelet");
        Directory.CreateDirectory(kubelet);
        using var shared = SharedMount.Create(kubelet);
        using var process = HostProcess.Start(
            NodeHost.Program,
            ["--endpoint", "unix://" + socket, "--state-dir", Path.Combine(directory, "state"), "--kubelet-dir", kubelet],
            new Dictionary<string, string> { ["NODE_ID"] = "node-proc" });
        await process.WaitForSocketAsync(socket, TimeSpan.FromSeconds(30));

        using (var client = GrpcChannels.Create(GrpcEndpoint.Unix(socket)))
        {
            var probe = await client.CallAsync<ProbeRequest, ProbeResponse>(CsiServices.Identity.FindMethodByName("Probe"), new ProbeRequest());
            Assert.NotNull(probe.Ready);
        }

        process.SendSigterm();

        Assert.Equal(0, await process.WaitForExitAsync(TimeSpan.FromSeconds(30)));
        Assert.False(File.Exists(socket));
        Assert.Contains("ublk-csi-node stopping", process.Stdout);
        shared.Dispose();
        Directory.Delete(directory, recursive: true);
    }
}

/// <summary>A directory bind-mounted onto itself and made shared, as kubelet's directory is on a node (needs root).</summary>
internal sealed class SharedMount : IDisposable
{
    private readonly string _path;
    private bool _disposed;

    private SharedMount(string path) => _path = path;

    public static SharedMount Create(string path)
    {
        UblkCsi.NodePlugin.Host.ExternalCommand.RunChecked("mount", "--bind", path, path);
        UblkCsi.NodePlugin.Host.ExternalCommand.RunChecked("mount", "--make-shared", path);
        return new SharedMount(path);
    }

    public void Dispose()
    {
        if (!_disposed)
        {
            _disposed = true;
            UblkCsi.NodePlugin.Host.ExternalCommand.Run("umount", _path);
        }
    }
}
