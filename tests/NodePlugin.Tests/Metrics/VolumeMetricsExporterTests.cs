using Prometheus;
using UblkCsi.Engine;
using UblkCsi.Engine.Backends;
using UblkCsi.Engine.Backends.Metering;
using UblkCsi.Engine.Backends.Qos;
using UblkCsi.NodePlugin.Metrics;
using UblkCsi.Stores;

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

    [Fact]
    public async Task AStoreVolumesOwnCountersGaugesAndHistogramsAreScrapedUnderTheStorePrefixThenRemoved()
    {
        var registry = Prometheus.Metrics.NewCustomRegistry();
        var store = new FixedStoreMetrics();
        var sources = new List<VolumeMetricsSource> { new("s3:b/pvc-2", new IoMeter(), null, "live", 0, null, store) };
        _ = new VolumeMetricsExporter(registry, () => sources);

        store.Set(hits: 3, dirty: 4096, uploadBuckets: [1, 0, 2]);
        var first = await ScrapeAsync(registry);
        store.Set(hits: 5, dirty: 0, uploadBuckets: [1, 1, 2]);
        var second = await ScrapeAsync(registry);
        sources.Clear();
        var afterUnstage = await ScrapeAsync(registry);

        Assert.Contains("# TYPE ublk_csi_store_s3_cache_hits_total counter", first);
        Assert.Contains("ublk_csi_store_s3_cache_hits_total{volume_id=\"s3:b/pvc-2\"} 3", first);
        Assert.Contains("# TYPE ublk_csi_store_s3_dirty_bytes gauge", first);
        Assert.Contains("ublk_csi_store_s3_dirty_bytes{volume_id=\"s3:b/pvc-2\"} 4096", first);
        Assert.Contains("ublk_csi_store_s3_upload_duration_seconds_count{volume_id=\"s3:b/pvc-2\"} 3", first);
        Assert.Contains("ublk_csi_store_s3_upload_duration_seconds_bucket{volume_id=\"s3:b/pvc-2\",le=\"0.1\"} 1", first);
        Assert.Contains("ublk_csi_store_s3_cache_hits_total{volume_id=\"s3:b/pvc-2\"} 5", second);
        Assert.Contains("ublk_csi_store_s3_dirty_bytes{volume_id=\"s3:b/pvc-2\"} 0", second);
        Assert.Contains("ublk_csi_store_s3_upload_duration_seconds_count{volume_id=\"s3:b/pvc-2\"} 4", second);
        Assert.Contains("ublk_csi_store_s3_upload_duration_seconds_bucket{volume_id=\"s3:b/pvc-2\",le=\"1\"} 2", second);
        Assert.DoesNotContain("pvc-2", afterUnstage);
    }

    /// <summary>A store volume's metrics with values the test sets.</summary>
    private sealed class FixedStoreMetrics : IStoreVolumeMetrics
    {
        private StoreMetricsSnapshot _snapshot = new([], []);

        public void Set(long hits, long dirty, long[] uploadBuckets) => _snapshot = new(
            [
                new StoreMetric("s3_cache_hits_total", "hits", StoreMetricKind.Counter, hits),
                new StoreMetric("s3_dirty_bytes", "dirty", StoreMetricKind.Gauge, dirty),
            ],
            [new StoreHistogram("s3_upload_duration_seconds", "uploads", [0.1, 1], uploadBuckets, 0.5)]);

        public StoreMetricsSnapshot ReadMetrics() => _snapshot;
    }
}
