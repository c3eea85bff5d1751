using System.Net;
using System.Net.Sockets;
using System.Runtime.Versioning;
using System.Text;
using System.Text.Json;
using UblkCsi.NodePlugin.State;

namespace UblkCsi.Cli.Tests;

/// <summary>
/// `ublk-csi status` reads the records the real node plugin writes (its StagedVolumeStore) and the live
/// counters from a Prometheus text endpoint; the host has no ublk driver, so device states are "unknown".
/// </summary>
[SupportedOSPlatform("linux")] // the node plugin's record types, as the plugin declares them
public sealed class StatusCommandTests : IDisposable
{
    private const string VolumeId = "file-root/pvc-status";
    private const string Secret = "s3cr3t-never-shown";
    private readonly string _stateDir = Directory.CreateTempSubdirectory("ublk-status-").FullName;

    public StatusCommandTests()
    {
        var record = new StagedVolumeRecord(
            VolumeId, "file", new Dictionary<string, string> { ["root"] = "/srv/vols" }, "pvc-status",
            "/var/lib/kubelet/plugins/kubernetes.io/csi/ublk.csi.storage/abc/globalmount", StagedAccess.Mount, "ext4", [], null,
            false, 7, 1 << 30, "boot", DateTimeOffset.UnixEpoch)
        {
            QosParameters = new Dictionary<string, string> { ["maxIops"] = "400" },
            Recoveries = 2,
            LastAdoptionGapSeconds = 6.7,
        };
        new StagedVolumeStore(_stateDir).Write(record, new Dictionary<string, string> { ["token"] = Secret });
    }

    public void Dispose() => Directory.Delete(_stateDir, recursive: true);

    [Fact]
    public async Task TableShowsEachVolumeWithItsStoreQosRecoveriesAndLiveCounters()
    {
        await using var metrics = await MetricsEndpoint.StartAsync(
            $"ublk_csi_volume_operations_total{{volume_id=\"{VolumeId}\",op=\"read\"}} 1200\n" +
            $"ublk_csi_volume_operations_total{{volume_id=\"{VolumeId}\",op=\"write\"}} 34\n" +
            $"ublk_csi_volume_bytes_total{{volume_id=\"{VolumeId}\",direction=\"write\"}} 1048576\n" +
            $"ublk_csi_volume_qos_throttled_seconds_total{{volume_id=\"{VolumeId}\"}} 12.5\n" +
            "ublk_csi_volume_operations_total{volume_id=\"other\",op=\"read\"} 99\n");

        var result = await CliProcess.RunAsync("status", "--state-dir", _stateDir, "--metrics", metrics.Address);

        Assert.True(result.ExitCode == 0, result.StandardError);
        var lines = result.StandardOutput.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.StartsWith("DEVICE", lines[0]);
        Assert.Contains("THROTTLED", lines[0]);
        var row = lines[1];
        foreach (var cell in new[] { "/dev/ublkb7", "unknown", VolumeId, "file", "mount ext4", "maxIops=400", "2 (last gap 6.7s)", "1200", "34", "1M", "12.5s" })
        {
            Assert.Contains(cell, row);
        }

        Assert.Equal(2, lines.Length);
        Assert.DoesNotContain(Secret, result.StandardOutput + result.StandardError);
    }

    [Fact]
    public async Task JsonCarriesTheSameFieldsWithoutCountersWhenNoEndpointIsGiven()
    {
        var result = await CliProcess.RunAsync("status", "--state-dir", _stateDir, "--json");

        Assert.True(result.ExitCode == 0, result.StandardError);
        var volume = Assert.Single(JsonDocument.Parse(result.StandardOutput).RootElement.EnumerateArray());
        Assert.Equal(VolumeId, volume.GetProperty("volumeId").GetString());
        Assert.Equal("/dev/ublkb7", volume.GetProperty("device").GetString());
        Assert.Equal("400", volume.GetProperty("qos").GetProperty("maxIops").GetString());
        Assert.Equal(2, volume.GetProperty("recoveries").GetInt64());
        Assert.False(volume.TryGetProperty("counters", out _));
        Assert.DoesNotContain(Secret, result.StandardOutput);
    }

    [Fact]
    public async Task AnUnreachableMetricsEndpointIsOneLineSayingWhatToCheck()
    {
        using var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        var port = ((IPEndPoint)probe.LocalEndpoint).Port;
        probe.Stop();

        var result = await CliProcess.RunAsync("status", "--state-dir", _stateDir, "--metrics", $"127.0.0.1:{port}");

        Assert.Equal(1, result.ExitCode);
        var line = Assert.Single(result.ErrorLines);
        Assert.StartsWith("ublk-csi status: --metrics: cannot read", line);
        Assert.Contains("--metrics-address", line);
    }

    /// <summary>A minimal HTTP endpoint answering every request with a fixed Prometheus text body.</summary>
    private sealed class MetricsEndpoint : IAsyncDisposable
    {
        private readonly TcpListener _listener;
        private readonly Task _serving;

        private MetricsEndpoint(TcpListener listener, string body)
        {
            _listener = listener;
            _serving = ServeAsync(body);
        }

        public string Address => $"127.0.0.1:{((IPEndPoint)_listener.LocalEndpoint).Port}";

        public static Task<MetricsEndpoint> StartAsync(string body)
        {
            var listener = new TcpListener(IPAddress.Loopback, 0);
            listener.Start();
            return Task.FromResult(new MetricsEndpoint(listener, body));
        }

        private async Task ServeAsync(string body)
        {
            try
            {
                while (true)
                {
                    using var client = await _listener.AcceptTcpClientAsync();
                    var stream = client.GetStream();
                    var buffer = new byte[4096];
                    _ = await stream.ReadAsync(buffer);
                    var payload = Encoding.UTF8.GetBytes(body);
                    var head = Encoding.ASCII.GetBytes($"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {payload.Length}\r\nConnection: close\r\n\r\n");
                    await stream.WriteAsync(head);
                    await stream.WriteAsync(payload);
                }
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException or IOException)
            {
                // stopped
            }
        }

        public async ValueTask DisposeAsync()
        {
            _listener.Stop();
            await _serving;
        }
    }
}
