using System.Threading.Tasks.Sources;
using Microsoft.Extensions.Logging;

namespace UblkCsi.Engine.Threading;

/// <summary>A blocking call for <see cref="BlockingWorkerPool"/>: (target, offset, length, data); meaning is the caller's.</summary>
public delegate void BlockingCallAction(object target, long offset, long length, ReadOnlyMemory<byte> data);

/// <summary>
/// A small, bounded set of dedicated OS threads for the blocking system calls of the data path
/// (fdatasync, FUA writes, direct I/O, zero-fill fallbacks), after ublksrv_aio: a backend hands a
/// call over and returns a pending <see cref="ValueTask"/>; a worker runs it and completes the task,
/// whose continuation (the engine's) pushes the tag and wakes the queue thread through its eventfd.
/// <para>
/// Not the .NET thread pool: a storm of syncs there blocks the threads that serve gRPC (CSI calls,
/// the rpc store) and the s3 uploads, and the pool only grows slowly. Not a queue thread either: it
/// must keep serving reads while a sync waits for the disk. The workers run as I/O flushers.
/// </para>
/// <para>
/// Bounded: at most <c>capacity</c> calls wait; a submitter beyond that blocks until a worker takes
/// one (backpressure, like a full submission ring). The engine's queue depths bound the calls in
/// flight, so the default capacity is not reached in practice. Nothing allocates per call: call
/// objects are pooled.
/// </para>
/// <para>
/// A call's continuation runs inline on its worker (no hop through the thread pool, which may be the
/// starved resource): the engine's only pushes a tag and writes an eventfd. Other awaiters should
/// keep theirs short too.
/// </para>
/// </summary>
public sealed class BlockingWorkerPool : IDisposable
{
    /// <summary>Default threads of <see cref="Shared"/>: enough to overlap syncs of several devices, few enough to stay small.</summary>
    public static readonly int DefaultWorkers = Math.Clamp(Environment.ProcessorCount * 2, 4, 16);

    public const int DefaultCapacity = 4096;

    private static readonly Lazy<BlockingWorkerPool> LazyShared = new(() => new BlockingWorkerPool(DefaultWorkers, DefaultCapacity, "ublk-blocking"));

    private readonly Lock _gate = new();
    private readonly BlockingCall?[] _queue;
    private readonly Stack<BlockingCall> _free = new();
    private readonly SemaphoreSlim _queued = new(0);
    private readonly SemaphoreSlim _room;
    private readonly Thread[] _threads;
    private readonly ILogger? _logger;
    private int _head;
    private int _count;
    private long _completed;
    private volatile bool _stopping;

    /// <summary>Starts <paramref name="workers"/> threads named <paramref name="name"/>-N.</summary>
    public BlockingWorkerPool(int workers, int capacity = DefaultCapacity, string name = "ublk-blocking", ILogger? logger = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(workers, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        _queue = new BlockingCall?[capacity];
        _room = new SemaphoreSlim(capacity);
        _logger = logger;
        _threads = new Thread[workers];
        for (var i = 0; i < workers; i++)
        {
            _threads[i] = new Thread(Work, maxStackSize: 256 * 1024) { IsBackground = true, Name = $"{name}-{i}" };
            _threads[i].Start();
        }
    }

    /// <summary>The process-wide pool the stores use unless given another.</summary>
    public static BlockingWorkerPool Shared => LazyShared.Value;

    /// <summary>True on a worker thread of any pool.</summary>
    public static bool IsWorkerThread => t_isWorker;

    /// <summary>Worker threads.</summary>
    public int Workers => _threads.Length;

    /// <summary>Calls run to completion since start.</summary>
    public long CompletedCalls => Interlocked.Read(ref _completed);

    [ThreadStatic]
    private static bool t_isWorker;

    /// <summary>
    /// Runs <paramref name="call"/>(target, offset, length, data) on a worker. Pass a static lambda so no
    /// closure is allocated. Throws <see cref="ObjectDisposedException"/> after <see cref="Dispose"/>.
    /// </summary>
    public ValueTask Run(BlockingCallAction call, object target, long offset, long length, ReadOnlyMemory<byte> data)
    {
        ObjectDisposedException.ThrowIf(_stopping, this);
        _room.Wait();
        BlockingCall item;
        lock (_gate)
        {
            item = _free.Count > 0 ? _free.Pop() : new BlockingCall(this);
            item.Set(call, target, offset, length, data);
            _queue[(_head + _count) % _queue.Length] = item;
            _count++;
        }

        var task = new ValueTask(item, item.Version);
        _queued.Release();
        return task;
    }

    /// <summary>Stops the workers once the queued calls are done. <see cref="Shared"/> is never disposed.</summary>
    public void Dispose()
    {
        if (_stopping)
        {
            return;
        }

        _stopping = true;
        _queued.Release(_threads.Length);
        foreach (var thread in _threads)
        {
            // A continuation of a call runs on its worker and may dispose the pool from there.
            if (thread != Thread.CurrentThread)
            {
                thread.Join();
            }
        }
    }

    private void Work()
    {
        t_isWorker = true;
        IoThreads.MarkIoFlusher(_logger);
        while (true)
        {
            _queued.Wait();
            BlockingCall? item;
            lock (_gate)
            {
                if (_count == 0)
                {
                    item = null;
                }
                else
                {
                    item = _queue[_head]!;
                    _queue[_head] = null;
                    _head = (_head + 1) % _queue.Length;
                    _count--;
                }
            }

            if (item == null)
            {
                if (_stopping)
                {
                    return;
                }

                continue;
            }

            _room.Release();
            item.Execute();
        }
    }

    private void Recycle(BlockingCall item)
    {
        lock (_gate)
        {
            if (_free.Count < _queue.Length)
            {
                _free.Push(item);
            }
        }
    }

    /// <summary>One pooled call and the task source its caller awaits.</summary>
    private sealed class BlockingCall(BlockingWorkerPool owner) : IValueTaskSource
    {
        private ManualResetValueTaskSourceCore<bool> _core;
        private BlockingCallAction? _call;
        private object? _target;
        private long _offset;
        private long _length;
        private ReadOnlyMemory<byte> _data;

        public short Version => _core.Version;

        public void Set(BlockingCallAction call, object target, long offset, long length, ReadOnlyMemory<byte> data)
        {
            _call = call;
            _target = target;
            _offset = offset;
            _length = length;
            _data = data;
        }

        public void Execute()
        {
            try
            {
                _call!(_target!, _offset, _length, _data);
            }
            catch (Exception e)
            {
                Interlocked.Increment(ref owner._completed);
                _core.SetException(e);
                return;
            }

            // Counted before completing: the continuation runs inline and may read the count.
            Interlocked.Increment(ref owner._completed);
            _core.SetResult(true);
        }

        void IValueTaskSource.GetResult(short token)
        {
            // Checked before the finally below: a second call (the token went stale with the first
            // call's reset) must not recycle a call that may already serve another request.
            if (token != _core.Version)
            {
                throw new InvalidOperationException("the result of this blocking call was already taken: a ValueTask can be awaited only once");
            }

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
                owner.Recycle(this);
            }
        }

        ValueTaskSourceStatus IValueTaskSource.GetStatus(short token) => _core.GetStatus(token);

        void IValueTaskSource.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
            _core.OnCompleted(continuation, state, token, flags);
    }
}
