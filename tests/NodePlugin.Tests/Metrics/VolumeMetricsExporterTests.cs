using Prometheus;
using UblkCsi.Engine;
using UblkCsi.Engine.Backends;
using UblkCsi.Engine.Backends.Metering;
using UblkCsi.Engine.Backends.Qos;
using UblkCsi.NodePlugin.Metrics;

namespace UblkCsi.NodePlugin.Tests.Metrics;

/// <summary>The per-volume metrics as a Prometheus scrape shows them.</summary>
public sealed class VolumeMetricsExporterTests
{
    private static async Task<string> ScrapeAsync(CollectorRegistry registry)
    {
        using var text = new MemoryStream();
        await registry.CollectAndExportAsTextAsync(text);
        return System.Text.Encoding.UTF8.GetString(text.ToArray());
    }

    [Fact]
    public async Task ServedVolumesAreScrapedWithOperationsBytesErrorsLatencyAndDeviceStateThenRemoved()
    {
        var registry = Prometheus.Metrics.NewCustomRegistry();
        var meter = new IoMeter();
        var throttled = new ThrottledBackend(new MemoryBackend(1 << 20), QosLimits.Unlimited);
        await using var backend = new MeteredBackend(throttled, meter);
        var sources = new List<VolumeMetricsSource> { new("file:/r/pvc-1", meter, throttled, "live", 2, 0.35) };
        _ = new VolumeMetricsExporter(registry, () => sources);
        var buffer = new byte[4096];
        await backend.WriteAsync(0, buffer);
        await backend.WriteAsync(4096, buffer);
        await backend.ReadAsync(0, buffer);
        await Assert.ThrowsAsync<BlockBackendException>(async () => await backend.ReadAsync(2 << 20, buffer));

        var first = await ScrapeAsync(registry);
        await backend.ReadAsync(0, buffer);
        var second = await ScrapeAsync(registry);
        sources.Clear();
        var afterUnstage = await ScrapeAsync(registry);

        Assert.Contains("ublk_csi_volume_operations_total{volume_id=\"file:/r/pvc-1\",op=\"write\"} 2", first);
        Assert.Contains("ublk_csi_volume_bytes_total{volume_id=\"file:/r/pvc-1\",direction=\"write\"} 8192", first);
        Assert.Contains("ublk_csi_volume_errors_total{volume_id=\"file:/r/pvc-1\",op=\"read\",errno=\"22\"} 1", first);
        Assert.Contains("ublk_csi_volume_operation_duration_seconds_count{volume_id=\"file:/r/pvc-1\",op=\"write\"} 2", first);
        Assert.Contains("ublk_csi_device_state{volume_id=\"file:/r/pvc-1\",state=\"live\"} 1", first);
        Assert.Contains("ublk_csi_device_state{volume_id=\"file:/r/pvc-1\",state=\"quiesced\"} 0", first);
        Assert.Contains("ublk_csi_device_recoveries_total{volume_id=\"file:/r/pvc-1\"} 2", first);
        Assert.Contains("ublk_csi_device_last_adoption_gap_seconds{volume_id=\"file:/r/pvc-1\"} 0.35", first);
        Assert.Contains("ublk_csi_volume_requests_in_flight{volume_id=\"file:/r/pvc-1\"} 0", first);
        Assert.Contains("ublk_csi_volume_operations_total{volume_id=\"file:/r/pvc-1\",op=\"read\"} 2", second);
        Assert.Contains("ublk_csi_volume_operation_duration_seconds_count{volume_id=\"file:/r/pvc-1\",op=\"read\"} 2", second);
        Assert.DoesNotContain("pvc-1", afterUnstage);
    }
}
