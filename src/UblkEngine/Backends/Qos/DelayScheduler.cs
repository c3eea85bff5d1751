using System.Diagnostics;
using System.Threading.Tasks.Sources;

namespace UblkCsi.Engine.Backends.Qos;

/// <summary>
/// Lets requests wait until a Stopwatch timestamp without allocating: waiters are pooled
/// <see cref="IValueTaskSource"/> objects in a priority queue, and one timer per scheduler is re-armed
/// for the earliest deadline. Released waiters continue on the thread pool, never on the timer thread.
/// </summary>
public sealed class DelayScheduler : IDisposable
{
    private readonly Lock _lock = new();
    private readonly PriorityQueue<Waiter, long> _queue = new();
    private readonly Stack<Waiter> _pool = new();
    private readonly Timer _timer;
    private long _armedFor = long.MaxValue;
    private bool _disposed;

    public DelayScheduler()
    {
        _timer = new Timer(static state => ((DelayScheduler)state!).ReleaseDue(), this, Timeout.Infinite, Timeout.Infinite);
    }

    /// <summary>Completes at or after <paramref name="timestamp"/> (a <see cref="Stopwatch.GetTimestamp"/> value).</summary>
    public ValueTask WaitUntilAsync(long timestamp)
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            var waiter = _pool.Count > 0 ? _pool.Pop() : new Waiter(this);
            var token = waiter.Prepare();
            _queue.Enqueue(waiter, timestamp);
            if (timestamp < _armedFor)
            {
                Arm(timestamp);
            }

            return new ValueTask(waiter, token);
        }
    }

    /// <summary>Releases every waiter at once (the volume is going away) and stops the timer.</summary>
    public void Dispose()
    {
        lock (_lock)
        {
            _disposed = true;
            _timer.Dispose();
            while (_queue.TryDequeue(out var waiter, out _))
            {
                waiter.Release();
            }
        }
    }

    private void ReleaseDue()
    {
        lock (_lock)
        {
            _armedFor = long.MaxValue;
            var now = Stopwatch.GetTimestamp();
            while (_queue.TryPeek(out var waiter, out var due) && due <= now)
            {
                _queue.Dequeue();
                waiter.Release();
            }

            if (!_disposed && _queue.TryPeek(out _, out var next))
            {
                Arm(next);
            }
        }
    }

    private void Arm(long timestamp)
    {
        _armedFor = timestamp;
        var milliseconds = Math.Max(0, (long)Math.Ceiling((timestamp - Stopwatch.GetTimestamp()) * 1000.0 / Stopwatch.Frequency));
        _timer.Change(milliseconds, Timeout.Infinite);
    }

    private void Return(Waiter waiter)
    {
        lock (_lock)
        {
            _pool.Push(waiter);
        }
    }

    private sealed class Waiter(DelayScheduler owner) : IValueTaskSource
    {
        private ManualResetValueTaskSourceCore<bool> _core = new() { RunContinuationsAsynchronously = true };

        public short Prepare()
        {
            _core.Reset();
            return _core.Version;
        }

        public void Release() => _core.SetResult(true);

        public void GetResult(short token)
        {
            _core.GetResult(token);
            // The token goes stale before the waiter is pooled: a second call throws instead of pooling it twice.
            _core.Reset();
            owner.Return(this);
        }

        public ValueTaskSourceStatus GetStatus(short token) => _core.GetStatus(token);

        public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
            _core.OnCompleted(continuation, state, token, flags);
    }
}
