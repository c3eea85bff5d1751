using System.Diagnostics;
using UblkCsi.Engine;
using UblkCsi.Engine.Backends;
using UblkCsi.Engine.Backends.Qos;

namespace UblkCsi.Engine.Tests.Backends;

/// <summary>
/// Per-volume limits: parameter parsing, and the admission schedule the rate limiter computes
/// (timestamps, not wall-clock rates: the measured rates are the kernel suite's qos scenario).
/// The schedules are computed against a frozen clock, so a loaded machine cannot move them.
/// </summary>
public sealed class QosTests
{
    private static double Seconds(long ticks) => (double)ticks / Stopwatch.Frequency;

    /// <summary>A clock that stands still at one Stopwatch timestamp.</summary>
    private sealed class FrozenClock : TimeProvider
    {
        public long Now { get; } = Stopwatch.GetTimestamp();

        public override long GetTimestamp() => Now;
    }

    [Fact]
    public void ParametersParseAndRoundTrip()
    {
        var limits = QosLimits.Parse(new Dictionary<string, string>
        {
            ["maxIops"] = "400",
            ["maxWriteBytesPerSecond"] = "1048576",
            ["burstSeconds"] = "2.5",
            ["bucket"] = "ignored: not a QoS key",
        });

        Assert.Equal(400, limits.MaxIops);
        Assert.Equal(1048576, limits.MaxWriteBytesPerSecond);
        Assert.Equal(2.5, limits.BurstSeconds);
        Assert.Null(limits.MaxReadIops);
        Assert.Equal(limits, QosLimits.Parse(limits.ToParameters()));
        Assert.True(QosLimits.Parse(new Dictionary<string, string>()).IsUnlimited);
    }

    [Theory]
    [InlineData("maxIops", "0", "use a whole number from 1 to")]
    [InlineData("maxIops", "-5", "use a whole number from 1 to")]
    [InlineData("maxBytesPerSecond", "10M", "use a whole number from 1 to")]
    [InlineData("burstSeconds", "forever", "use seconds from 0 to 3600")]
    public void BadValuesNameTheParameterAndWhatIsAllowed(string key, string value, string allowed)
    {
        var e = Assert.Throws<ArgumentException>(() => QosLimits.Parse(new Dictionary<string, string> { [key] = value }));

        Assert.Equal(key, e.ParamName);
        Assert.Contains($"parameter '{key}': '{value}' is not allowed", e.Message);
        Assert.Contains(allowed, e.Message);
    }

    [Fact]
    public void UnlimitedAdmitsEverythingAtOnce()
    {
        var limiter = new RateLimiter(QosLimits.Unlimited);
        var before = Stopwatch.GetTimestamp();

        for (var i = 0; i < 10_000; i++)
        {
            Assert.True(limiter.Reserve(isRead: true, 1 << 20) <= Stopwatch.GetTimestamp());
        }

        Assert.True(Stopwatch.GetTimestamp() >= before);
    }

    [Fact]
    public void IopsLimitSpacesRequestsAfterTheBurstIsSpent()
    {
        // 400 IOPS with 1 s of credit: about 400 requests start at once, then one every 2.5 ms.
        var clock = new FrozenClock();
        var limiter = new RateLimiter(new QosLimits { MaxIops = 400, BurstSeconds = 1 }, clock);
        var now = clock.Now;
        var starts = Enumerable.Range(0, 1400).Select(_ => limiter.Reserve(isRead: true, 4096)).ToArray();

        var immediate = starts.Count(s => Seconds(s - now) < 0.05);
        Assert.InRange(immediate, 400, 425);

        // The next 1000 requests take 1000 / 400 = 2.5 s of schedule.
        var span = Seconds(starts[^1] - starts[^1001]);
        Assert.InRange(span, 2.5 * 0.99, 2.5 * 1.01);
    }

    [Fact]
    public void BandwidthLimitChargesBytesAndReadAndWriteLimitsAreSeparate()
    {
        var clock = new FrozenClock();
        var limiter = new RateLimiter(new QosLimits { MaxReadBytesPerSecond = 1 << 20, BurstSeconds = 0 }, clock);
        var now = clock.Now;

        var reads = Enumerable.Range(0, 9).Select(_ => limiter.Reserve(isRead: true, 128 << 10)).ToArray();
        var write = limiter.Reserve(isRead: false, 8 << 20);

        // Eight 128 KiB reads are 1 MiB: the ninth starts about 1 s later; writes are not limited.
        Assert.InRange(Seconds(reads[8] - now), 0.99, 1.05);
        Assert.True(Seconds(write - now) < 0.05);
    }

    [Fact]
    public void NewLimitsApplyToTheRequestsThatFollow()
    {
        var clock = new FrozenClock();
        var limiter = new RateLimiter(new QosLimits { MaxIops = 10, BurstSeconds = 0 }, clock);
        limiter.Reserve(isRead: true, 4096);
        limiter.Update(new QosLimits { MaxIops = 1000, BurstSeconds = 0 });
        var now = clock.Now;

        var starts = Enumerable.Range(0, 100).Select(_ => limiter.Reserve(isRead: true, 4096)).ToArray();

        // The old schedule (one request at 10 IOPS: 0.1 s) is honoured, then 1000 IOPS.
        Assert.InRange(Seconds(starts[99] - now), 0.09 + 0.099 - 0.01, 0.1 + 0.1 + 0.02);
        Assert.Equal(1000, limiter.Limits.MaxIops);
    }

    [Fact]
    public async Task ThrottledRequestsWaitAndCompleteNeverFail()
    {
        await using var backend = new ThrottledBackend(new MemoryBackend(1 << 20), new QosLimits { MaxIops = 200, BurstSeconds = 0 });
        var buffer = new byte[4096];
        var watch = Stopwatch.StartNew();

        await Task.WhenAll(Enumerable.Range(0, 20).Select(i => backend.WriteAsync(i * 4096L, buffer).AsTask()));

        // 20 requests at 200 IOPS need at least 95 ms of schedule; all succeed.
        Assert.True(watch.Elapsed >= TimeSpan.FromMilliseconds(90), $"took {watch.Elapsed}");
        Assert.True(backend.ThrottledSeconds > 0);
    }

    [Fact]
    public async Task AWaitConsumedTwiceThrowsAndItsWaiterIsPooledOnce()
    {
        using var scheduler = new DelayScheduler();
        var due = scheduler.WaitUntilAsync(Stopwatch.GetTimestamp());
        await due;

        // GetResult itself, as a second consumer would call it (an await would stop at the stale status).
        Assert.Throws<InvalidOperationException>(() => due.GetAwaiter().GetResult());

        // Pooled once, the waiter serves one of the next two waits; pooled twice, both would share it
        // and the first one's token would be stale.
        var later = Stopwatch.GetTimestamp() + Stopwatch.Frequency * 60;
        var first = scheduler.WaitUntilAsync(later);
        var second = scheduler.WaitUntilAsync(later);
        Assert.False(first.IsCompleted);
        Assert.False(second.IsCompleted);
    }
}
