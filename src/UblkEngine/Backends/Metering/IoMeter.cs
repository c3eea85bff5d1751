using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.CompilerServices;

namespace UblkCsi.Engine.Backends.Metering;

/// <summary>
/// Counts what one volume's data path does: operations, bytes, errors by errno, requests in flight,
/// and a latency histogram per operation. Built for the I/O hot path: no allocation and no lock per
/// request. Counters live in stripes (one per CPU, padded to whole cache lines) updated with
/// interlocked adds by whichever thread runs the request, and are summed only when someone reads a
/// <see cref="Snapshot"/> (a metrics scrape). Errors are rare, so they are kept in a dictionary.
/// </summary>
public sealed class IoMeter
{
    /// <summary>Upper bounds of the latency buckets in seconds; the last bucket is everything above.</summary>
    public static readonly IReadOnlyList<double> LatencyBucketBounds =
        [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

    private const int Operations = 5;
    private const int Buckets = 16; // LatencyBucketBounds.Count + the overflow bucket
    private const int CountSlot = 0;
    private const int BytesSlot = Operations;
    private const int LatencySumSlot = 2 * Operations;
    private const int InFlightSlot = 3 * Operations;
    private const int BucketSlot = InFlightSlot + 1;
    private const int UsedSlots = BucketSlot + (Operations * Buckets);

    // Whole 128-byte blocks per stripe, so two CPUs never write the same cache line (or its prefetch pair).
    private const int StripeSlots = (UsedSlots + 15) / 16 * 16;

    private static readonly long[] BucketBoundTicks = LatencyBucketBounds.Select(s => (long)(s * Stopwatch.Frequency)).ToArray();

    private readonly long[] _slots;
    private readonly int _stripeMask;
    private readonly ConcurrentDictionary<(IoOperation Operation, int Errno), StrongBox<long>> _errors = new();

    /// <summary>Creates a meter with one stripe per CPU (at most 64).</summary>
    public IoMeter()
    {
        var stripes = (int)Math.Min(64, System.Numerics.BitOperations.RoundUpToPowerOf2((uint)Environment.ProcessorCount));
        _stripeMask = stripes - 1;
        _slots = new long[stripes * StripeSlots];
    }

    /// <summary>Marks a request as started; pass the returned timestamp to <see cref="Completed"/> or <see cref="Failed"/>.</summary>
    public long Started()
    {
        Interlocked.Increment(ref _slots[Stripe() + InFlightSlot]);
        return Stopwatch.GetTimestamp();
    }

    /// <summary>Records a request that succeeded, moving <paramref name="bytes"/> (0 for flush, discard, write-zeroes).</summary>
    public void Completed(IoOperation operation, long startedTimestamp, long bytes)
    {
        var stripe = Stripe();
        var op = (int)operation;
        var elapsed = Stopwatch.GetTimestamp() - startedTimestamp;
        Interlocked.Increment(ref _slots[stripe + CountSlot + op]);
        if (bytes != 0)
        {
            Interlocked.Add(ref _slots[stripe + BytesSlot + op], bytes);
        }

        Interlocked.Add(ref _slots[stripe + LatencySumSlot + op], elapsed);
        Interlocked.Increment(ref _slots[stripe + BucketSlot + (op * Buckets) + BucketOf(elapsed)]);
        Interlocked.Decrement(ref _slots[stripe + InFlightSlot]);
    }

    /// <summary>Undoes <see cref="Started"/> for a request that was not issued after all (a declined zero-copy attempt; its copy-path retry is metered on its own).</summary>
    public void Abandoned() => Interlocked.Decrement(ref _slots[Stripe() + InFlightSlot]);

    /// <summary>Records a request that failed with <paramref name="errno"/> (positive Linux errno).</summary>
    public void Failed(IoOperation operation, long startedTimestamp, int errno)
    {
        _ = startedTimestamp;
        var counter = _errors.GetOrAdd((operation, errno), static _ => new StrongBox<long>());
        Interlocked.Increment(ref counter.Value);
        Interlocked.Decrement(ref _slots[Stripe() + InFlightSlot]);
    }

    /// <summary>The sum over all stripes at this moment (not atomic across counters, as any scrape).</summary>
    public IoMeterSnapshot Snapshot()
    {
        var operations = new IoOperationSnapshot[Operations];
        long inFlight = 0;
        for (var op = 0; op < Operations; op++)
        {
            long count = 0, bytes = 0, latencyTicks = 0;
            var buckets = new long[Buckets];
            for (var stripe = 0; stripe < _slots.Length; stripe += StripeSlots)
            {
                count += Volatile.Read(ref _slots[stripe + CountSlot + op]);
                bytes += Volatile.Read(ref _slots[stripe + BytesSlot + op]);
                latencyTicks += Volatile.Read(ref _slots[stripe + LatencySumSlot + op]);
                for (var b = 0; b < Buckets; b++)
                {
                    buckets[b] += Volatile.Read(ref _slots[stripe + BucketSlot + (op * Buckets) + b]);
                }
            }

            operations[op] = new IoOperationSnapshot((IoOperation)op, count, bytes, (double)latencyTicks / Stopwatch.Frequency, buckets);
        }

        for (var stripe = 0; stripe < _slots.Length; stripe += StripeSlots)
        {
            inFlight += Volatile.Read(ref _slots[stripe + InFlightSlot]);
        }

        var errors = _errors.Select(e => new IoErrorCount(e.Key.Operation, e.Key.Errno, Interlocked.Read(ref e.Value.Value)))
            .OrderBy(e => e.Operation).ThenBy(e => e.Errno).ToArray();
        return new IoMeterSnapshot(operations, Math.Max(0, inFlight), errors);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private int Stripe() => (Thread.GetCurrentProcessorId() & _stripeMask) * StripeSlots;

    private static int BucketOf(long elapsedTicks)
    {
        var bounds = BucketBoundTicks;
        for (var i = 0; i < bounds.Length; i++)
        {
            if (elapsedTicks <= bounds[i])
            {
                return i;
            }
        }

        return bounds.Length;
    }
}

/// <summary>One operation's totals: count and bytes of successful requests, summed latency, and latency buckets (not cumulative; the last is above every bound).</summary>
public sealed record IoOperationSnapshot(IoOperation Operation, long Count, long Bytes, double LatencySeconds, IReadOnlyList<long> LatencyBuckets);

/// <summary>How often an operation failed with one errno.</summary>
public readonly record struct IoErrorCount(IoOperation Operation, int Errno, long Count);

/// <summary>A meter's totals at one moment.</summary>
public sealed record IoMeterSnapshot(IReadOnlyList<IoOperationSnapshot> Operations, long InFlight, IReadOnlyList<IoErrorCount> Errors)
{
    /// <summary>The totals of one operation.</summary>
    public IoOperationSnapshot this[IoOperation operation] => Operations[(int)operation];
}
