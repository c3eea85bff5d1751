using System.Diagnostics;

namespace UblkCsi.Stores.Metrics;

/// <summary>
/// Durations counted into fixed buckets with interlocked adds: no lock and no allocation per
/// observation, read as a <see cref="StoreHistogram"/> at scrape time.
/// </summary>
internal sealed class DurationHistogram(string name, string help, IReadOnlyList<double> upperBounds)
{
    private readonly long[] _boundTicks = upperBounds.Select(s => (long)(s * Stopwatch.Frequency)).ToArray();
    private readonly long[] _buckets = new long[upperBounds.Count + 1];
    private long _sumTicks;

    /// <summary>Counts the time since <paramref name="startedTimestamp"/> (a <see cref="Stopwatch.GetTimestamp"/>).</summary>
    public void ObserveSince(long startedTimestamp)
    {
        var elapsed = Stopwatch.GetTimestamp() - startedTimestamp;
        var bucket = 0;
        while (bucket < _boundTicks.Length && elapsed > _boundTicks[bucket])
        {
            bucket++;
        }

        Interlocked.Increment(ref _buckets[bucket]);
        Interlocked.Add(ref _sumTicks, elapsed);
    }

    /// <summary>The buckets and sum now.</summary>
    public StoreHistogram Read()
    {
        var buckets = new long[_buckets.Length];
        for (var i = 0; i < buckets.Length; i++)
        {
            buckets[i] = Volatile.Read(ref _buckets[i]);
        }

        return new(name, help, upperBounds, buckets, (double)Interlocked.Read(ref _sumTicks) / Stopwatch.Frequency);
    }
}
