using System.Collections.Concurrent;
using System.Threading.Tasks.Sources;

namespace UblkCsi.Stores.Internal;

/// <summary>
/// Runs a blocking call (fdatasync, a synchronous write) on the thread pool and completes a
/// <see cref="ValueTask"/> when it is done, without allocating: work items are pooled and reused.
/// Used so a slow sync does not stall the engine's queue thread, which keeps serving reads and
/// page-cache writes meanwhile.
/// </summary>
internal sealed class BlockingCallOffload : IValueTaskSource, IThreadPoolWorkItem
{
    private const int MaxPooled = 256;
    private static readonly ConcurrentQueue<BlockingCallOffload> Pool = new();

    private ManualResetValueTaskSourceCore<bool> _core;
    private Action<object, long, ReadOnlyMemory<byte>>? _call;
    private object? _target;
    private long _argument;
    private ReadOnlyMemory<byte> _data;

    /// <summary>
    /// Queues <paramref name="call"/>(target, argument, data). Pass a static lambda so no closure is
    /// allocated; the delegate instance is then cached by the compiler.
    /// </summary>
    public static ValueTask Run(Action<object, long, ReadOnlyMemory<byte>> call, object target, long argument, ReadOnlyMemory<byte> data)
    {
        if (!Pool.TryDequeue(out var item))
        {
            item = new BlockingCallOffload();
        }

        item._call = call;
        item._target = target;
        item._argument = argument;
        item._data = data;
        ThreadPool.UnsafeQueueUserWorkItem(item, preferLocal: false);
        return new ValueTask(item, item._core.Version);
    }

    void IThreadPoolWorkItem.Execute()
    {
        try
        {
            _call!(_target!, _argument, _data);
            _core.SetResult(true);
        }
        catch (Exception e)
        {
            _core.SetException(e);
        }
    }

    void IValueTaskSource.GetResult(short token)
    {
        try
        {
            _core.GetResult(token);
        }
        finally
        {
            _call = null;
            _target = null;
            _data = default;
            _core.Reset();
            if (Pool.Count < MaxPooled)
            {
                Pool.Enqueue(this);
            }
        }
    }

    ValueTaskSourceStatus IValueTaskSource.GetStatus(short token) => _core.GetStatus(token);

    void IValueTaskSource.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _core.OnCompleted(continuation, state, token, flags);
}
