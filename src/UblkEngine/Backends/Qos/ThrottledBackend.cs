using System.Diagnostics;
using System.Runtime.CompilerServices;

namespace UblkCsi.Engine.Backends.Qos;

/// <summary>
/// Enforces a volume's <see cref="QosLimits"/> in its data path: a request within the limits (or
/// the saved burst) goes straight to the inner backend; one beyond them waits its turn and is never
/// failed. Limits can change while the volume serves (<see cref="UpdateLimits"/>). No allocation per
/// request: the wait is a pooled <see cref="DelayScheduler"/> waiter and the continuation a pooled
/// async method.
/// </summary>
public sealed class ThrottledBackend : IRegisteredBufferBackend
{
    private readonly RateLimiter _limiter;
    private readonly DelayScheduler _delays = new();
    private long _throttledTicks;

    public ThrottledBackend(IBlockBackend inner, QosLimits limits)
    {
        Inner = inner ?? throw new ArgumentNullException(nameof(inner));
        _limiter = new RateLimiter(limits);
    }

    public IBlockBackend Inner { get; }

    public BlockBackendInfo Info => Inner.Info;

    /// <summary>The limits in force.</summary>
    public QosLimits Limits => _limiter.Limits;

    /// <summary>Total time requests spent waiting for the limits, in seconds.</summary>
    public double ThrottledSeconds => (double)Interlocked.Read(ref _throttledTicks) / Stopwatch.Frequency;

    /// <summary>Applies new limits to the requests that follow.</summary>
    public void UpdateLimits(QosLimits limits) => _limiter.Update(limits);

    public ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        var start = _limiter.Reserve(isRead: true, buffer.Length);
        return IsDue(start) ? Inner.ReadAsync(offset, buffer, cancellationToken) : ReadLaterAsync(start, offset, buffer, cancellationToken);
    }

    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, BlockWriteFlags flags = BlockWriteFlags.None, CancellationToken cancellationToken = default)
    {
        var start = _limiter.Reserve(isRead: false, data.Length);
        return IsDue(start) ? Inner.WriteAsync(offset, data, flags, cancellationToken) : WriteLaterAsync(start, offset, data, flags, cancellationToken);
    }

    /// <summary>Flushes are never throttled: holding one back would only delay durability, not save bandwidth.</summary>
    public ValueTask FlushAsync(CancellationToken cancellationToken = default) => Inner.FlushAsync(cancellationToken);

    public ValueTask DiscardAsync(long offset, long length, CancellationToken cancellationToken = default)
    {
        var start = _limiter.Reserve(isRead: false, 0);
        return IsDue(start) ? Inner.DiscardAsync(offset, length, cancellationToken) : DiscardLaterAsync(start, offset, length, cancellationToken);
    }

    public ValueTask WriteZeroesAsync(long offset, long length, CancellationToken cancellationToken = default)
    {
        var start = _limiter.Reserve(isRead: false, 0);
        return IsDue(start) ? Inner.WriteZeroesAsync(offset, length, cancellationToken) : WriteZeroesLaterAsync(start, offset, length, cancellationToken);
    }

    public bool ServesRegisteredBuffers => Inner is IRegisteredBufferBackend { ServesRegisteredBuffers: true };

    /// <summary>
    /// Zero copy only while the volume has no limits: a request that may have to wait cannot keep the
    /// kernel's registered pages for later on another thread, so limited volumes take the copy path
    /// (where the limiter reserves, once).
    /// </summary>
    public bool TryReadRegistered(long offset, RegisteredBuffer buffer, CancellationToken cancellationToken, out ValueTask pending)
    {
        pending = default;
        return _limiter.Limits.IsUnlimited && Inner is IRegisteredBufferBackend registered
            && registered.TryReadRegistered(offset, buffer, cancellationToken, out pending);
    }

    public bool TryWriteRegistered(long offset, RegisteredBuffer buffer, BlockWriteFlags flags, CancellationToken cancellationToken, out ValueTask pending)
    {
        pending = default;
        return _limiter.Limits.IsUnlimited && Inner is IRegisteredBufferBackend registered
            && registered.TryWriteRegistered(offset, buffer, flags, cancellationToken, out pending);
    }

    public async ValueTask DisposeAsync()
    {
        _delays.Dispose();
        await Inner.DisposeAsync().ConfigureAwait(false);
    }

    private static bool IsDue(long start) => start <= Stopwatch.GetTimestamp();

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask ReadLaterAsync(long start, long offset, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        await WaitAsync(start).ConfigureAwait(false);
        await Inner.ReadAsync(offset, buffer, cancellationToken).ConfigureAwait(false);
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask WriteLaterAsync(long start, long offset, ReadOnlyMemory<byte> data, BlockWriteFlags flags, CancellationToken cancellationToken)
    {
        await WaitAsync(start).ConfigureAwait(false);
        await Inner.WriteAsync(offset, data, flags, cancellationToken).ConfigureAwait(false);
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask DiscardLaterAsync(long start, long offset, long length, CancellationToken cancellationToken)
    {
        await WaitAsync(start).ConfigureAwait(false);
        await Inner.DiscardAsync(offset, length, cancellationToken).ConfigureAwait(false);
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask WriteZeroesLaterAsync(long start, long offset, long length, CancellationToken cancellationToken)
    {
        await WaitAsync(start).ConfigureAwait(false);
        await Inner.WriteZeroesAsync(offset, length, cancellationToken).ConfigureAwait(false);
    }

    private ValueTask WaitAsync(long start)
    {
        Interlocked.Add(ref _throttledTicks, Math.Max(0, start - Stopwatch.GetTimestamp()));
        return _delays.WaitUntilAsync(start);
    }
}
