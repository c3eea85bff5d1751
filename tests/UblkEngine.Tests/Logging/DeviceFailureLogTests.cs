using Microsoft.Extensions.Logging;
using UblkCsi.Engine;
using UblkCsi.Engine.Abi;
using UblkCsi.Engine.Device;
using UblkCsi.Engine.Logging;
using UblkCsi.UblkEngine.Tests.Device;

namespace UblkCsi.UblkEngine.Tests.Logging;

/// <summary>Backend failures are seen: the first of each kind per device with errno and reason, then rate-limited.</summary>
public sealed class DeviceFailureLogTests
{
    [Fact]
    public void TheFirstFailureOfEachKindIsLoggedWithErrnoAndReasonThenAtMostOnceAMinute()
    {
        var logger = new ListLogger();
        var time = new ManualTime();
        var backend = new FailingBackend();
        using var harness = new DispatcherHarness(backend, failures: new DeviceFailureLog(7, logger, time));
        for (var i = 0; i < 100; i++)
        {
            harness.OfferWriteData(0, new byte[4096]);
            harness.Dispatch(0, UblkIoOp.Write, 0, 4096);
            harness.Dispatch(1, UblkIoOp.Flush, 0, 0);
        }

        Assert.All(harness.Commits, c => Assert.True(c.Result < 0));
        Assert.Equal(2, logger.Events.Count);
        var write = Assert.Single(logger.Events, e => e.Message.Contains("WRITE"));
        Assert.Equal(LogEventIds.FirstBackendFailure, write.Id);
        Assert.Contains("errno 28", write.Message);
        Assert.Contains("volume 'v' is full", write.Message);
        Assert.Contains(logger.Events, e => e.Message.Contains("FLUSH") && e.Message.Contains("errno 5") && e.Message.Contains("InvalidOperationException"));

        time.Advance(DeviceFailureLog.RepeatInterval);
        harness.OfferWriteData(0, new byte[4096]);
        harness.Dispatch(0, UblkIoOp.Write, 0, 4096);
        var repeat = logger.Events[^1];
        Assert.Equal(LogEventIds.RepeatedBackendFailure, repeat.Id);
        Assert.Contains("99 more", repeat.Message);
    }

    private sealed class FailingBackend : IBlockBackend
    {
        public BlockBackendInfo Info { get; } = new(1 << 20, 512, 4096, BlockBackendFeatures.VolatileCache);

        public ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken = default) => default;

        public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, BlockWriteFlags flags = BlockWriteFlags.None, CancellationToken cancellationToken = default) =>
            ValueTask.FromException(new BlockBackendException(BlockBackendException.ENOSPC, "volume 'v' is full"));

        public ValueTask FlushAsync(CancellationToken cancellationToken = default) =>
            ValueTask.FromException(new InvalidOperationException("bucket gone"));

        public ValueTask DiscardAsync(long offset, long length, CancellationToken cancellationToken = default) => default;

        public ValueTask WriteZeroesAsync(long offset, long length, CancellationToken cancellationToken = default) => default;

        public ValueTask DisposeAsync() => default;
    }

    private sealed class ManualTime : TimeProvider
    {
        private long _ticks = 1;

        public override long TimestampFrequency => TimeSpan.TicksPerSecond;

        public override long GetTimestamp() => _ticks;

        public void Advance(TimeSpan by) => _ticks += by.Ticks;
    }

    private sealed class ListLogger : ILogger
    {
        public List<(int Id, string Message)> Events { get; } = [];

        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            Events.Add((eventId.Id, formatter(state, exception)));
    }
}
