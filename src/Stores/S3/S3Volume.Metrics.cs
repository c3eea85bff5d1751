using System.Diagnostics;
using UblkCsi.Stores.Metrics;

namespace UblkCsi.Stores.S3;

/// <summary>
/// Metrics half of <see cref="S3Volume"/>: cache hits and misses of reads, dirty bytes, chunk uploads
/// with their duration, and failed uploads. The data path only does interlocked adds; the values are
/// read at scrape time (<see cref="ReadMetrics"/>).
/// </summary>
internal sealed partial class S3Volume : IStoreVolumeMetrics
{
    /// <summary>Upload duration buckets: a chunk PUT takes milliseconds on a LAN to seconds over a WAN or under load.</summary>
    private static readonly IReadOnlyList<double> UploadBucketBounds = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

    private readonly DurationHistogram _uploadDurations = new(
        "s3_upload_duration_seconds", "Time to PUT one chunk object into the bucket.", UploadBucketBounds);

    private long _cacheHits;
    private long _cacheMisses;
    private long _uploadFailures;

    /// <summary>Chunk reads served from the node's cache without waiting for a download.</summary>
    public long CacheHits => Interlocked.Read(ref _cacheHits);

    /// <summary>Chunk reads that waited for a download from the bucket.</summary>
    public long CacheMisses => Interlocked.Read(ref _cacheMisses);

    public StoreMetricsSnapshot ReadMetrics()
    {
        var uploads = _uploadDurations.Read();
        return new StoreMetricsSnapshot(
            [
                new StoreMetric("s3_cache_hits_total", "Chunk reads served from the node's cache without a download.", StoreMetricKind.Counter, CacheHits),
                new StoreMetric("s3_cache_misses_total", "Chunk reads that waited for a download from the bucket.", StoreMetricKind.Counter, CacheMisses),
                new StoreMetric("s3_dirty_bytes", "Bytes written to the cache and not yet uploaded.", StoreMetricKind.Gauge, DirtyBytes),
                new StoreMetric("s3_uploads_total", "Chunk objects uploaded to the bucket.", StoreMetricKind.Counter, uploads.Buckets.Sum()),
                new StoreMetric("s3_upload_failures_total", "Chunk uploads that failed (the chunk stays dirty and is retried).", StoreMetricKind.Counter, Interlocked.Read(ref _uploadFailures)),
            ],
            [uploads]);
    }

    private void CountCacheHit() => Interlocked.Increment(ref _cacheHits);

    private void CountCacheMiss() => Interlocked.Increment(ref _cacheMisses);

    private void CountUpload(long startedTimestamp) => _uploadDurations.ObserveSince(startedTimestamp);

    private void CountUploadFailure() => Interlocked.Increment(ref _uploadFailures);

    private static long UploadStarted() => Stopwatch.GetTimestamp();
}
