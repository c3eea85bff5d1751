using Prometheus;
using UblkCsi.Engine.Backends.Metering;
using UblkCsi.Stores;

namespace UblkCsi.NodePlugin.Metrics;

/// <summary>
/// Publishes every served volume's <see cref="IoMeter"/> in a Prometheus registry. The data path
/// only bumps its own striped counters; the totals are read here, once per scrape (a before-collect
/// callback), and carried into prometheus-net's metrics: counters with <c>IncTo</c>, gauges with
/// <c>Set</c>, and the latency histogram by observing each bucket's new requests at the bucket's
/// upper bound (so <c>_sum</c> is an upper estimate; buckets and counts are exact). A store volume
/// that keeps its own counters (<see cref="IStoreVolumeMetrics"/>) has them exported the same way as
/// <c>ublk_csi_store_NAME{volume_id}</c>, each family created when a volume first reports it. Series
/// of a volume that is no longer served are removed.
/// </summary>
public sealed class VolumeMetricsExporter
{
    private static readonly string[] OperationNames = ["read", "write", "flush", "discard", "write_zeroes"];
    private static readonly string[] DeviceStates = ["live", "quiesced", "gone"];

    private readonly Func<IReadOnlyCollection<VolumeMetricsSource>> _sources;
    private readonly Counter _operations;
    private readonly Counter _bytes;
    private readonly Counter _errors;
    private readonly Gauge _inFlight;
    private readonly Histogram _latency;
    private readonly Counter _throttled;
    private readonly Gauge _deviceState;
    private readonly Counter _recoveries;
    private readonly Gauge _adoptionGap;
    private readonly MetricFactory _factory;
    private readonly Dictionary<string, Collector> _storeFamilies = new(StringComparer.Ordinal);
    private readonly Dictionary<(string Volume, string Series), long[]> _observedBuckets = [];
    private readonly Lock _lock = new();
    private HashSet<string> _exported = new(StringComparer.Ordinal);

    /// <summary>Registers the metrics in <paramref name="registry"/>, read from <paramref name="sources"/> at each scrape.</summary>
    public VolumeMetricsExporter(CollectorRegistry registry, Func<IReadOnlyCollection<VolumeMetricsSource>> sources)
    {
        _sources = sources;
        var factory = Prometheus.Metrics.WithCustomRegistry(registry);
        _factory = factory;
        _operations = factory.CreateCounter("ublk_csi_volume_operations_total", "Block requests completed successfully, by volume and operation.", "volume_id", "op");
        _bytes = factory.CreateCounter("ublk_csi_volume_bytes_total", "Bytes moved by successful requests, by volume and direction.", "volume_id", "direction");
        _errors = factory.CreateCounter("ublk_csi_volume_errors_total", "Block requests that failed, by volume, operation and the errno the kernel saw.", "volume_id", "op", "errno");
        _inFlight = factory.CreateGauge("ublk_csi_volume_requests_in_flight", "Block requests being served, by volume.", "volume_id");
        _latency = factory.CreateHistogram("ublk_csi_volume_operation_duration_seconds", "Time to serve a block request (QoS wait included), by volume and operation.",
            new HistogramConfiguration { LabelNames = ["volume_id", "op"], Buckets = [.. IoMeter.LatencyBucketBounds] });
        _throttled = factory.CreateCounter("ublk_csi_volume_qos_throttled_seconds_total", "Time requests waited for the volume's QoS limits.", "volume_id");
        _deviceState = factory.CreateGauge("ublk_csi_device_state", "1 for the ublk device's current state (live, quiesced, gone).", "volume_id", "state");
        _recoveries = factory.CreateCounter("ublk_csi_device_recoveries_total", "Times a node plugin process adopted the volume's live device from its predecessor.", "volume_id");
        _adoptionGap = factory.CreateGauge("ublk_csi_device_last_adoption_gap_seconds", "How long the device had no server during its last adoption.", "volume_id");
        registry.AddBeforeCollectCallback(Collect);
    }

    /// <summary>Reads every volume's totals into the metrics (called by the registry before each scrape).</summary>
    public void Collect()
    {
        lock (_lock)
        {
            var current = new HashSet<string>(StringComparer.Ordinal);
            foreach (var source in _sources())
            {
                current.Add(source.VolumeId);
                Export(source);
            }

            foreach (var gone in _exported.Except(current))
            {
                Remove(gone);
            }

            _exported = current;
        }
    }

    private void Export(VolumeMetricsSource source)
    {
        var id = source.VolumeId;
        var snapshot = source.Meter.Snapshot();
        foreach (var operation in snapshot.Operations)
        {
            var op = OperationNames[(int)operation.Operation];
            _operations.WithLabels(id, op).IncTo(operation.Count);
            ObserveNewBuckets(_latency.WithLabels(id, op), (id, op), IoMeter.LatencyBucketBounds, operation.LatencyBuckets);
        }

        _bytes.WithLabels(id, "read").IncTo(snapshot[IoOperation.Read].Bytes);
        _bytes.WithLabels(id, "write").IncTo(snapshot[IoOperation.Write].Bytes);
        foreach (var error in snapshot.Errors)
        {
            _errors.WithLabels(id, OperationNames[(int)error.Operation], error.Errno.ToString(System.Globalization.CultureInfo.InvariantCulture)).IncTo(error.Count);
        }

        _inFlight.WithLabels(id).Set(snapshot.InFlight);
        _throttled.WithLabels(id).IncTo(source.Qos?.ThrottledSeconds ?? 0);
        foreach (var state in DeviceStates)
        {
            _deviceState.WithLabels(id, state).Set(state == source.DeviceState ? 1 : 0);
        }

        _recoveries.WithLabels(id).IncTo(source.Recoveries);
        if (source.LastAdoptionGapSeconds is { } gap)
        {
            _adoptionGap.WithLabels(id).Set(gap);
        }

        if (source.Store is { } store)
        {
            ExportStore(id, store.ReadMetrics());
        }
    }

    private void ExportStore(string id, StoreMetricsSnapshot snapshot)
    {
        foreach (var value in snapshot.Values)
        {
            switch (StoreFamily(value.Name, value.Help, value.Kind))
            {
                case Counter counter: counter.WithLabels(id).IncTo(value.Value); break;
                case Gauge gauge: gauge.WithLabels(id).Set(value.Value); break;
            }
        }

        foreach (var histogram in snapshot.Histograms)
        {
            var family = (Histogram)StoreFamily(histogram.Name, histogram.Help, null, histogram.UpperBounds);
            ObserveNewBuckets(family.WithLabels(id), (id, "store:" + histogram.Name), histogram.UpperBounds, histogram.Buckets);
        }
    }

    /// <summary>The family of a store metric (a histogram when <paramref name="kind"/> is null), created on first use.</summary>
    private Collector StoreFamily(string name, string help, StoreMetricKind? kind, IReadOnlyList<double>? bounds = null)
    {
        if (!_storeFamilies.TryGetValue(name, out var family))
        {
            var fullName = "ublk_csi_store_" + name;
            family = kind switch
            {
                StoreMetricKind.Counter => _factory.CreateCounter(fullName, help, "volume_id"),
                StoreMetricKind.Gauge => _factory.CreateGauge(fullName, help, "volume_id"),
                _ => _factory.CreateHistogram(fullName, help, new HistogramConfiguration { LabelNames = ["volume_id"], Buckets = [.. bounds!] }),
            };
            _storeFamilies[name] = family;
        }

        return family;
    }

    /// <summary>
    /// Carries new requests from a meter's bucket counts (not cumulative, the last above every bound)
    /// into a prometheus-net histogram child: each bucket's increase since the last scrape is observed
    /// at the bucket's upper bound.
    /// </summary>
    private void ObserveNewBuckets(Histogram.Child child, (string Volume, string Series) key, IReadOnlyList<double> bounds, IReadOnlyList<long> buckets)
    {
        if (!_observedBuckets.TryGetValue(key, out var observed))
        {
            observed = new long[buckets.Count];
            _observedBuckets[key] = observed;
        }

        for (var b = 0; b < buckets.Count; b++)
        {
            var added = buckets[b] - observed[b];
            if (added > 0)
            {
                child.Observe(b < bounds.Count ? bounds[b] : bounds[^1] * 2, added);
                observed[b] = buckets[b];
            }
        }
    }

    private void Remove(string volumeId)
    {
        foreach (var op in OperationNames)
        {
            _operations.RemoveLabelled(volumeId, op);
            _latency.RemoveLabelled(volumeId, op);
        }

        foreach (var (key, _) in _observedBuckets.Where(e => e.Key.Volume == volumeId).ToList())
        {
            _observedBuckets.Remove(key);
        }

        _bytes.RemoveLabelled(volumeId, "read");
        _bytes.RemoveLabelled(volumeId, "write");
        foreach (var labels in _errors.GetAllLabelValues().Where(l => l[0] == volumeId).ToList())
        {
            _errors.RemoveLabelled(labels);
        }

        _inFlight.RemoveLabelled(volumeId);
        _throttled.RemoveLabelled(volumeId);
        foreach (var state in DeviceStates)
        {
            _deviceState.RemoveLabelled(volumeId, state);
        }

        _recoveries.RemoveLabelled(volumeId);
        _adoptionGap.RemoveLabelled(volumeId);
        foreach (var family in _storeFamilies.Values)
        {
            switch (family)
            {
                case Counter counter: counter.RemoveLabelled(volumeId); break;
                case Gauge gauge: gauge.RemoveLabelled(volumeId); break;
                case Histogram histogram: histogram.RemoveLabelled(volumeId); break;
            }
        }
    }
}
