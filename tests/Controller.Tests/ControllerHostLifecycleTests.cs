using UblkCsi.GrpcEndpoints;
using Csi.V1;
using UblkCsi.GrpcHosting;
using UblkCsi.TestSupport;

namespace UblkCsi.Controller.Tests;

/// <summary>Options, start and stop of the controller, in-process and as a real process.</summary>
public sealed class ControllerHostLifecycleTests
{
    [Theory]
    [InlineData("--log-level", "loud", "--log-level: 'loud' is not a log level; allowed: trace, debug, information, warning, error, critical")]
    [InlineData("--log-format", "xml", "--log-format: 'xml' is not a log format; allowed: text, json")]
    [InlineData("--endpoint", "/csi/csi.sock", "--endpoint: endpoint '/csi/csi.sock' has an unsupported scheme")]
    [InlineData("--endpoint", "unix://relative.sock", "--endpoint: endpoint 'unix://relative.sock' must name an absolute socket path")]
    [InlineData("--driver-name", "-bad-", "--driver-name: '-bad-' must start and end with a letter or digit")]
    [InlineData("--driver-name", "has space", "--driver-name: 'has space' may contain only letters")]
    [InlineData("--max-message-bytes", "12", "--max-message-bytes: '12' is not a byte count between 1024 and 268435456")]
    [InlineData("--frobnicate", "1", "--frobnicate: unknown option")]
    public async Task InvalidOptionPrintsOneLineNamingItAndExitsWith2(string option, string value, string expected)
    {
        var (exit, error, _) = await RunningHost.RunToExitAsync(ControllerHost.RunAsync, [option, value]);

        Assert.Equal(2, exit);
        Assert.StartsWith("ublk-csi-controller: " + expected, error);
        Assert.Single(error.TrimEnd('\n').Split('\n'));
    }

    [Fact]
    public async Task InvalidEnvironmentValueNamesTheVariable()
    {
        var (exit, error, _) = await RunningHost.RunToExitAsync(ControllerHost.RunAsync, [], new Dictionary<string, string?> { ["LOG_LEVEL"] = "chatty" });

        Assert.Equal(2, exit);
        Assert.Contains("--log-level (from LOG_LEVEL): 'chatty'", error);
    }

    [Fact]
    public async Task OptionWithoutValueIsRejected()
    {
        var (exit, error, _) = await RunningHost.RunToExitAsync(ControllerHost.RunAsync, ["--endpoint"]);

        Assert.Equal(2, exit);
        Assert.Contains("--endpoint: needs a value", error);
    }

    [Fact]
    public async Task HelpListsOptionsWithTheirEnvironmentVariables()
    {
        var (exit, _, output) = await RunningHost.RunToExitAsync(ControllerHost.RunAsync, ["--help"]);

        Assert.Equal(0, exit);
        Assert.Contains("--endpoint", output);
        Assert.Contains("[env CSI_ENDPOINT]", output);
        Assert.Contains("[env DRIVER_NAME]", output);
        Assert.Contains("[env LOG_LEVEL]", output);
    }

    [Fact]
    public async Task GracefulStopRemovesTheSocketAndExitsZero()
    {
        var host = await RunningHost.StartAsync(ControllerHost.RunAsync, []);
        Assert.True(File.Exists(host.SocketPath));

        Assert.Equal(0, await host.StopAsync());

        Assert.False(File.Exists(host.SocketPath));
        await host.DisposeAsync();
    }

    [Fact]
    public async Task StaleSocketDoesNotBlockStart()
    {
        var directory = RunningHost.NewDirectory();
        DeadSocket.LeaveBehind(Path.Combine(directory, "csi.sock"));

        await using var host = await RunningHost.StartAsync(ControllerHost.RunAsync, [], directory: directory);

        var probe = await host.CallAsync<ProbeRequest, ProbeResponse>(CsiServices.Identity.FindMethodByName("Probe"), new ProbeRequest());
        Assert.True(probe.Ready);
    }

    [Fact]
    public async Task SecondHostOnALiveSocketFailsToStartWithExit1()
    {
        await using var first = await RunningHost.StartAsync(ControllerHost.RunAsync, []);

        var (exit, error, _) = await RunningHost.RunToExitAsync(ControllerHost.RunAsync, ["--endpoint", first.Endpoint.ToString()]);

        Assert.Equal(1, exit);
        Assert.Contains("another process is serving", error);
    }

    [Fact]
    public async Task RealProcessStopsCleanlyOnSigtermWithJsonLogs()
    {
        var directory = RunningHost.NewDirectory();
        var socket = Path.Combine(directory, "csi.sock");
        using var process = HostProcess.Start(
            ControllerHost.Program,
            ["--log-format", "json"],
            new Dictionary<string, string> { ["CSI_ENDPOINT"] = "unix://" + socket, ["LOG_LEVEL"] = "debug" });
        await process.WaitForSocketAsync(socket, TimeSpan.FromSeconds(30));

        using (var client = GrpcChannels.Create(GrpcEndpoint.Unix(socket)))
        {
            var info = await client.CallAsync<GetPluginInfoRequest, GetPluginInfoResponse>(CsiServices.Identity.FindMethodByName("GetPluginInfo"), new GetPluginInfoRequest());
            Assert.Equal("ublk.csi.storage", info.Name);
        }

        process.SendSigterm();

        Assert.Equal(0, await process.WaitForExitAsync(TimeSpan.FromSeconds(30)));
        Assert.False(File.Exists(socket));
        var lines = process.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.NotEmpty(lines);
        Assert.All(lines, line => System.Text.Json.JsonDocument.Parse(line).Dispose());
        Assert.Contains(lines, l => l.Contains("rpc /csi.v1.Identity/GetPluginInfo OK", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.Contains("stopping", StringComparison.Ordinal));
        Directory.Delete(directory, recursive: true);
    }

    [Fact]
    public async Task MetricsAddressServesCallCountsByMethodAndStatusInPrometheusFormat()
    {
        var port = FreeTcpPort();
        await using var host = await RunningHost.StartAsync(ControllerHost.RunAsync, ["--metrics-address", $"127.0.0.1:{port}"]);
        await host.CallAsync<ProbeRequest, ProbeResponse>(CsiServices.Identity.FindMethodByName("Probe"), new ProbeRequest());

        using var http = new HttpClient();
        var text = await http.GetStringAsync($"http://127.0.0.1:{port}/metrics");

        Assert.Contains("# TYPE ublk_csi_rpc_calls_total counter", text);
        Assert.Contains("ublk_csi_rpc_calls_total{method=\"/csi.v1.Identity/Probe\",code=\"OK\"}", text);
        Assert.Contains("ublk_csi_rpc_duration_seconds_bucket{method=\"/csi.v1.Identity/Probe\"", text);
    }

    [Fact]
    public async Task BadMetricsAddressIsAnOptionError()
    {
        var (exit, error, _) = await RunningHost.RunToExitAsync(ControllerHost.RunAsync, ["--metrics-address", "somewhere"]);

        Assert.Equal(2, exit);
        Assert.Contains("--metrics-address: 'somewhere' is not a metrics address; expected HOST:PORT", error);
    }

    private static int FreeTcpPort()
    {
        using var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        return ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
    }
}
