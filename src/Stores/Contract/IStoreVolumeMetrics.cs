namespace UblkCsi.Stores;

/// <summary>
/// Implemented by store volumes that count what their store does beyond the block requests the
/// engine meters (cache hits, uploads, reconnects...). The node plugin reads it at each metrics
/// scrape and exports every value under <c>ublk_csi_store_NAME{volume_id}</c>, so stores need no
/// metrics library: counting on the data path is an interlocked add, and this read happens only
/// when someone scrapes.
/// </summary>
public interface IStoreVolumeMetrics
{
    /// <summary>The volume's counters and gauges at this moment (not atomic across values, as any scrape).</summary>
    StoreMetricsSnapshot ReadMetrics();
}

/// <summary>Whether a value only grows (a counter, name ending in <c>_total</c>) or goes up and down (a gauge).</summary>
public enum StoreMetricKind
{
    Counter,
    Gauge,
}

/// <summary>One named value of a store volume.</summary>
/// <param name="Name">Metric name without the <c>ublk_csi_store_</c> prefix, e.g. <c>s3_cache_hits_total</c>; the same for every volume of the store.</param>
/// <param name="Help">What it counts, one sentence.</param>
/// <param name="Kind">Counter or gauge.</param>
/// <param name="Value">The value now.</param>
public readonly record struct StoreMetric(string Name, string Help, StoreMetricKind Kind, double Value);

/// <summary>A distribution of durations, e.g. of uploads.</summary>
/// <param name="Name">Metric name without the prefix, ending in <c>_seconds</c>.</param>
/// <param name="Help">What it measures, one sentence.</param>
/// <param name="UpperBounds">Bucket upper bounds in seconds, ascending.</param>
/// <param name="Buckets">Counts per bucket, not cumulative; one more than the bounds (the last is above every bound).</param>
/// <param name="SumSeconds">Sum of all observed durations.</param>
public sealed record StoreHistogram(string Name, string Help, IReadOnlyList<double> UpperBounds, IReadOnlyList<long> Buckets, double SumSeconds);

/// <summary>What a store volume reports at one scrape.</summary>
public sealed record StoreMetricsSnapshot(IReadOnlyList<StoreMetric> Values, IReadOnlyList<StoreHistogram> Histograms);
