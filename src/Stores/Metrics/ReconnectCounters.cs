namespace UblkCsi.Stores.Metrics;

/// <summary>
/// Counts a network store's lost connections that were re-established and the requests sent again on
/// them (interlocked adds, off the data path's steady state: only a reconnect touches them).
/// </summary>
internal sealed class ReconnectCounters(string store, string resentName, string resentHelp)
{
    private long _reconnects;
    private long _resent;

    /// <summary>A lost connection (or stream) was replaced by a new one.</summary>
    public void Reconnected() => Interlocked.Increment(ref _reconnects);

    /// <summary><paramref name="requests"/> unanswered requests of a lost connection go out again on the next one.</summary>
    public void Resending(int requests) => Interlocked.Add(ref _resent, requests);

    /// <summary>Connections re-established so far.</summary>
    public long Reconnects => Interlocked.Read(ref _reconnects);

    /// <summary>Requests sent again so far.</summary>
    public long Resent => Interlocked.Read(ref _resent);

    /// <summary>The two counters as the store's metrics.</summary>
    public StoreMetricsSnapshot Read() => new(
        [
            new StoreMetric($"{store}_reconnects_total", $"Lost {store} server connections re-established.", StoreMetricKind.Counter, Reconnects),
            new StoreMetric(resentName, resentHelp, StoreMetricKind.Counter, Resent),
        ],
        []);
}
