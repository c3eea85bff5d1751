using System.Runtime.InteropServices;
using UblkCsi.Engine.Device;
using UblkCsi.Engine.IoUring;

namespace UblkCsi.Engine;

/// <summary>
/// The io_uring of the engine queue thread that is calling a backend, offered to that backend:
/// file I/O submitted here goes to the kernel in the same io_uring_enter as the queue's commits and
/// completes on the queue thread, with no hand-off to another thread and no wake-up (ublksrv's loop
/// target model). <see cref="Current"/> is null on any other thread, so a backend asks for it on
/// every call and falls back to its own way (inline or a blocking worker) when it is absent, when a
/// call was delayed onto another thread (QoS) or when every operation slot is busy.
/// <para>
/// A backend may also ask to be called back once the queue has dispatched everything that arrived
/// together (<see cref="CallAtBatchEnd"/>), to send what those requests queued in one system call,
/// and any thread may ask for such a call (<see cref="TryPost"/>) to move work onto the queue
/// thread, for example a socket's receive loop that then waits on the ring (<see cref="TryWaitReadable"/>).
/// </para>
/// </summary>
public sealed unsafe class QueueIo
{
    /// <summary>Marks CQEs of backend operations; ublk commands use the tag and the waker all ones.</summary>
    internal const ulong OperationMark = 1UL << 62;

    [ThreadStatic]
    private static QueueIo? t_current;

    private readonly Ring _ring;
    private readonly RingOperation[] _operations;
    private readonly Stack<int> _free;
    private readonly Lock _freeLock = new();
    private List<IQueueBatchListener> _batchListeners = new(4);
    private List<IQueueBatchListener> _endingBatch = new(4);
    private readonly EventFdWaker? _waker;
    private readonly Lock _postLock = new();
    private List<IQueueBatchListener> _posted = new(4);
    private List<IQueueBatchListener> _runningPosted = new(4);
    private int _postedCount;
    private bool _stopped;

    /// <param name="waker">Wakes the queue thread for <see cref="TryPost"/> (tests without one end batches themselves).</param>
    internal QueueIo(Ring ring, int operations, EventFdWaker? waker = null)
    {
        _ring = ring;
        _waker = waker;
        _operations = new RingOperation[operations];
        _free = new Stack<int>(operations);
        for (var index = operations - 1; index >= 0; index--)
        {
            _free.Push(index);
        }
    }

    /// <summary>The device's USER_COPY window of this queue (zero-copy devices keep it), for <see cref="RegisteredBuffer.CopyIn"/>.</summary>
    internal UserCopyChannel? UserCopy { get; init; }

    /// <summary>The queue the calling thread serves, or null when it is not an engine queue thread.</summary>
    public static QueueIo? Current => t_current;

    /// <summary>
    /// Submits a read of <paramref name="buffer"/>.Length bytes at <paramref name="offset"/> of
    /// <paramref name="fd"/>; the task completes when all of it is read (a range past the file's end
    /// reads as zeros) or fails with <see cref="BlockBackendException"/> carrying the errno. False
    /// when no operation slot is free: the caller serves the request its own way.
    /// The descriptor must stay open until the task completes.
    /// </summary>
    public bool TryRead(int fd, Memory<byte> buffer, long offset, out ValueTask pending) =>
        TryStart(RingOperationKind.Read, fd, buffer, offset, out pending);

    /// <summary>Submits a write of all of <paramref name="data"/> at <paramref name="offset"/>; as <see cref="TryRead"/>.</summary>
    public bool TryWrite(int fd, ReadOnlyMemory<byte> data, long offset, out ValueTask pending) =>
        TryStart(RingOperationKind.Write, fd, MemoryMarshal.AsMemory(data), offset, out pending);

    /// <summary>
    /// Submits a read of <paramref name="buffer"/>.Length bytes at <paramref name="offset"/> of
    /// <paramref name="fd"/> straight into the request's registered pages (IORING_OP_READ_FIXED);
    /// as <see cref="TryRead"/>, except that a read past the file's end fails with EIO (the pages
    /// cannot be zeroed from here). False also when <paramref name="buffer"/> belongs to another queue.
    /// </summary>
    public bool TryReadRegistered(int fd, RegisteredBuffer buffer, long offset, out ValueTask pending) =>
        TryStartRegistered(RingOperationKind.ReadFixed, fd, buffer, offset, out pending);

    /// <summary>
    /// Submits a receive of <paramref name="length"/> bytes from the stream socket <paramref name="fd"/>
    /// into the request's registered pages, <paramref name="bufferOffset"/> bytes in (IORING_OP_READ_FIXED
    /// on the socket: the network's only copy lands in the request). The task completes once all of it
    /// arrived; the peer closing first fails it with EIO. A short read is continued once the socket
    /// reads as ready again, which on TCP means SO_RCVLOWAT bytes are waiting: a mark above what is
    /// left of the receive stalls it, so keep the mark at 1 meanwhile. As <see cref="TryReadRegistered"/> otherwise.
    /// </summary>
    public bool TryReceiveRegistered(int fd, RegisteredBuffer buffer, int bufferOffset, int length, out ValueTask pending)
    {
        if (buffer.Ring != this || bufferOffset < 0 || length <= 0 || length > buffer.Length - bufferOffset || !TryTakeSlot(fd, out var operation, out var index))
        {
            pending = default;
            return false;
        }

        pending = operation.StartReceiveRegistered(fd, buffer, bufferOffset, length);
        operation.Prepare(_ring.GetSqe(), OperationMark | (uint)index);
        return true;
    }

    /// <summary>Submits a write of the request's registered pages at <paramref name="offset"/> (IORING_OP_WRITE_FIXED); as <see cref="TryReadRegistered"/>.</summary>
    public bool TryWriteRegistered(int fd, RegisteredBuffer buffer, long offset, out ValueTask pending) =>
        TryStartRegistered(RingOperationKind.WriteFixed, fd, buffer, offset, out pending);

    /// <summary>Submits an fdatasync of <paramref name="fd"/>; as <see cref="TryRead"/>.</summary>
    public bool TryDataSync(int fd, out ValueTask pending) =>
        TryStart(RingOperationKind.DataSync, fd, Memory<byte>.Empty, 0, out pending);

    /// <summary>
    /// Submits a one-shot wait for <paramref name="fd"/> to become readable (IORING_OP_POLL_ADD,
    /// POLLIN); the task completes on this queue thread when it is (or hung up, or has an error).
    /// It may also complete early, when the queue stops: the caller then finds nothing to read and
    /// is off the queue thread, so it reads another way. As <see cref="TryRead"/> otherwise.
    /// </summary>
    public bool TryWaitReadable(int fd, out ValueTask pending)
    {
        if (!TryTakeSlot(fd, out var operation, out var index))
        {
            pending = default;
            return false;
        }

        pending = operation.StartWaitReadable(fd);
        operation.Prepare(_ring.GetSqe(), OperationMark | (uint)index);
        return true;
    }

    /// <summary>
    /// From any thread: calls <paramref name="listener"/> once on this queue thread, at the end of its
    /// next batch (waking it if it waits), or, if the queue stops first, on its way out (off
    /// <see cref="Current"/>). False when the queue has stopped already.
    /// </summary>
    public bool TryPost(IQueueBatchListener listener)
    {
        lock (_postLock)
        {
            if (_stopped)
            {
                return false;
            }

            _posted.Add(listener);
            _postedCount = _posted.Count;
        }

        _waker?.Signal();
        return true;
    }

    /// <summary>
    /// Calls <paramref name="listener"/> once, on this queue thread, after the queue has dispatched
    /// every request that arrived with the current one and before it next waits for the kernel.
    /// Registering again in the same batch is ignored.
    /// </summary>
    public void CallAtBatchEnd(IQueueBatchListener listener)
    {
        if (!_batchListeners.Contains(listener))
        {
            _batchListeners.Add(listener);
        }
    }

    /// <summary>Queue thread, once it is ready to serve: makes this the thread's <see cref="Current"/>.</summary>
    internal void BindToCurrentThread() => t_current = this;

    /// <summary>Queue thread, on exit.</summary>
    internal static void UnbindCurrentThread() => t_current = null;

    /// <summary>Queue thread: a CQE carrying <see cref="OperationMark"/> arrived.</summary>
    internal void OnCompletion(ulong userData, int result)
    {
        var index = (int)(userData & ~OperationMark);
        if ((uint)index >= (uint)_operations.Length || _operations[index] is not { } operation)
        {
            throw new InvalidOperationException($"completion for unknown backend operation {index}");
        }

        if (operation.OnCompletion(result))
        {
            // A short transfer continues where it stopped.
            operation.Prepare(_ring.GetSqe(), OperationMark | (uint)index);
        }
    }

    /// <summary>Queue thread, before it waits: runs the batch-end callbacks registered since the last one.</summary>
    internal void EndBatch()
    {
        if (Volatile.Read(ref _postedCount) != 0)
        {
            RunPosted();
        }

        if (_batchListeners.Count == 0)
        {
            return;
        }

        // A callback may register for the next batch, which collects in the other list.
        (_endingBatch, _batchListeners) = (_batchListeners, _endingBatch);
        foreach (var listener in _endingBatch)
        {
            listener.OnQueueBatchEnd();
        }

        _endingBatch.Clear();
    }

    /// <summary>
    /// Queue thread, on exit, after it left <see cref="Current"/>: refuses later posts, ends every
    /// readiness wait still in the kernel and runs what was posted, so nobody waits for a thread that is gone.
    /// </summary>
    internal void Stop()
    {
        lock (_postLock)
        {
            _stopped = true;
        }

        foreach (var operation in _operations)
        {
            if (operation is { IsWaitingForReadable: true })
            {
                operation.EndWaitEarly();
            }
        }

        RunPosted();
    }

    private void RunPosted()
    {
        lock (_postLock)
        {
            (_runningPosted, _posted) = (_posted, _runningPosted);
            _postedCount = 0;
        }

        foreach (var listener in _runningPosted)
        {
            listener.OnQueueBatchEnd();
        }

        _runningPosted.Clear();
    }

    internal void Release(int index)
    {
        lock (_freeLock)
        {
            _free.Push(index);
        }
    }

    private bool TryStart(RingOperationKind kind, int fd, Memory<byte> buffer, long offset, out ValueTask pending)
    {
        if (!TryTakeSlot(fd, out var operation, out var index))
        {
            pending = default;
            return false;
        }

        pending = operation.Start(kind, fd, buffer, offset);
        operation.Prepare(_ring.GetSqe(), OperationMark | (uint)index);
        return true;
    }

    private bool TryStartRegistered(RingOperationKind kind, int fd, RegisteredBuffer buffer, long offset, out ValueTask pending)
    {
        if (buffer.Ring != this || buffer.Length <= 0 || !TryTakeSlot(fd, out var operation, out var index))
        {
            pending = default;
            return false;
        }

        pending = operation.StartRegistered(kind, fd, buffer, offset);
        operation.Prepare(_ring.GetSqe(), OperationMark | (uint)index);
        return true;
    }

    private bool TryTakeSlot(int fd, out RingOperation operation, out int index)
    {
        operation = null!;
        if (t_current != this || fd < 0)
        {
            index = -1;
            return false;
        }

        lock (_freeLock)
        {
            if (!_free.TryPop(out index))
            {
                return false;
            }
        }

        operation = _operations[index] ??= new RingOperation(this, index);
        return true;
    }
}

/// <summary>Told by the engine queue thread when it has dispatched a batch of requests (<see cref="QueueIo.CallAtBatchEnd"/>).</summary>
public interface IQueueBatchListener
{
    void OnQueueBatchEnd();
}
