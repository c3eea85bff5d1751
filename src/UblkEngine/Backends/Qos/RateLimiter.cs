using System.Diagnostics;

namespace UblkCsi.Engine.Backends.Qos;

/// <summary>
/// Decides when a request may start under a volume's <see cref="QosLimits"/>. Each limit is a
/// token bucket kept as a theoretical arrival time (GCRA): a request of cost c at a rate r moves the
/// bucket's schedule forward by c / r; a request starts once the schedule is within the burst of real
/// time (the burst is the saved credit an idle volume may spend), the latest over every bucket it draws from. Admission therefore never
/// fails and never drifts: after a late timer the next requests catch up until the rate is met.
/// A small lock guards the buckets: a volume has a handful of queues, so it is rarely contended.
/// </summary>
public sealed class RateLimiter
{
    private readonly Lock _lock = new();
    private readonly TimeProvider _clock;
    private Buckets _buckets;

    /// <param name="limits">The limits in force from the first request.</param>
    /// <param name="clock">Where "now" comes from (Stopwatch timestamps); the system clock unless a test freezes time.</param>
    public RateLimiter(QosLimits limits, TimeProvider? clock = null)
    {
        _buckets = new Buckets(limits ?? throw new ArgumentNullException(nameof(limits)));
        _clock = clock ?? TimeProvider.System;
    }

    /// <summary>The limits in force.</summary>
    public QosLimits Limits => _buckets.Limits;

    /// <summary>Replaces the limits for the requests that follow; saved credit is kept up to the new burst.</summary>
    public void Update(QosLimits limits)
    {
        ArgumentNullException.ThrowIfNull(limits);
        lock (_lock)
        {
            _buckets = _buckets.With(limits);
        }
    }

    /// <summary>
    /// Reserves a request's place and returns the Stopwatch timestamp at which it may start (at or
    /// before now: start at once). <paramref name="isRead"/> selects the read or write buckets.
    /// </summary>
    public long Reserve(bool isRead, long bytes)
    {
        var now = _clock.GetTimestamp();
        var buckets = _buckets;
        if (buckets.Limits.IsUnlimited)
        {
            return now;
        }

        lock (_lock)
        {
            buckets = _buckets;
            var start = now;
            start = Math.Max(start, buckets.Iops.Take(now, 1));
            start = Math.Max(start, buckets.Bytes.Take(now, bytes));
            start = Math.Max(start, isRead ? buckets.ReadIops.Take(now, 1) : buckets.WriteIops.Take(now, 1));
            start = Math.Max(start, isRead ? buckets.ReadBytes.Take(now, bytes) : buckets.WriteBytes.Take(now, bytes));
            return start;
        }
    }

    private sealed class Buckets
    {
        public Buckets(QosLimits limits)
        {
            Limits = limits;
            var burstTicks = (long)(limits.BurstSeconds * Stopwatch.Frequency);
            Iops = new Bucket(limits.MaxIops, burstTicks);
            Bytes = new Bucket(limits.MaxBytesPerSecond, burstTicks);
            ReadIops = new Bucket(limits.MaxReadIops, burstTicks);
            WriteIops = new Bucket(limits.MaxWriteIops, burstTicks);
            ReadBytes = new Bucket(limits.MaxReadBytesPerSecond, burstTicks);
            WriteBytes = new Bucket(limits.MaxWriteBytesPerSecond, burstTicks);
        }

        public QosLimits Limits { get; }

        public Bucket Iops { get; }

        public Bucket Bytes { get; }

        public Bucket ReadIops { get; }

        public Bucket WriteIops { get; }

        public Bucket ReadBytes { get; }

        public Bucket WriteBytes { get; }

        public Buckets With(QosLimits limits)
        {
            var next = new Buckets(limits);
            next.Iops.KeepStateOf(Iops);
            next.Bytes.KeepStateOf(Bytes);
            next.ReadIops.KeepStateOf(ReadIops);
            next.WriteIops.KeepStateOf(WriteIops);
            next.ReadBytes.KeepStateOf(ReadBytes);
            next.WriteBytes.KeepStateOf(WriteBytes);
            return next;
        }
    }

    /// <summary>One limit. Unlimited buckets (null rate) admit everything at once.</summary>
    private sealed class Bucket(long? ratePerSecond, long burstTicks)
    {
        private readonly double _ticksPerUnit = ratePerSecond is { } rate ? (double)Stopwatch.Frequency / rate : 0;
        private long _theoreticalArrival = long.MinValue;

        /// <summary>Takes <paramref name="cost"/> units and returns when the request may start.</summary>
        public long Take(long now, long cost)
        {
            if (_ticksPerUnit == 0 || cost == 0)
            {
                return now;
            }

            // GCRA: a request may start once the bucket's schedule is within the burst of real time;
            // idle time (a schedule behind now) is credit, capped at the burst by the max below.
            var start = _theoreticalArrival == long.MinValue ? now : Math.Max(now, _theoreticalArrival - burstTicks);
            _theoreticalArrival = Math.Max(_theoreticalArrival, now) + (long)(cost * _ticksPerUnit);
            return start;
        }

        public void KeepStateOf(Bucket previous) => _theoreticalArrival = previous._theoreticalArrival;
    }
}
