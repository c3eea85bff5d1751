using UblkCsi.Engine.Abi;
using UblkCsi.Engine.Buffers;
using UblkCsi.Engine.Interop;
using UblkCsi.Engine.IoUring;

namespace UblkCsi.Engine.Device;

/// <summary>Where a finished request goes: the queue turns it into a COMMIT_AND_FETCH.</summary>
internal interface ICommitSink
{
    /// <summary>Completes <paramref name="tag"/> with bytes transferred (&gt;= 0) or a negative errno.</summary>
    void Commit(int tag, int result, ulong bufferAddress);
}

/// <summary>
/// Turns ublk requests of one queue into backend calls and their results into commits. Runs on the
/// queue thread, except <see cref="TagOperation.OnBackendCompleted"/>, which runs wherever the
/// backend completes and only hands the tag back through a lock-free stack and an eventfd.
/// Nothing here allocates per request: per-tag operation objects and their continuation delegates
/// are created once, buffers come from a pool (USER_COPY) or are fixed per tag.
/// </summary>
internal sealed unsafe class RequestDispatcher : IDisposable
{
    private readonly IBlockBackend _backend;
    private readonly DeviceCapacity _capacity;
    private readonly int _maxIoBytes;
    private readonly UserCopyChannel? _userCopy;
    private readonly IoBufferPool _pool;
    private readonly ICommitSink _sink;
    private readonly EventFdWaker _waker;
    private readonly CompletionStack _completed;
    private readonly TagOperation[] _operations;
    private readonly CancellationTokenSource _abandonSource = new();
    private readonly DeviceFailureLog? _failures;
    private readonly int _queueThreadId = Environment.CurrentManagedThreadId;

    /// <summary>Set under UBLK_F_AUTO_BUF_REG with a backend that serves registered buffers: the queue ring holding them.</summary>
    private readonly QueueIo? _registeredRing;
    private readonly IRegisteredBufferBackend? _registeredBackend;

    public RequestDispatcher(
        int depth,
        IBlockBackend backend,
        DeviceCapacity capacity,
        int maxIoBytes,
        UserCopyChannel? userCopy,
        IoBufferPool pool,
        ICommitSink sink,
        EventFdWaker waker,
        DeviceFailureLog? failures = null,
        QueueIo? registeredRing = null)
    {
        _failures = failures;
        // The kernel registers every data request's pages at its tag in the ring's table; a backend that
        // can use them reads and writes there, any other request is copied through the user-copy channel.
        if (registeredRing != null && userCopy != null && backend is IRegisteredBufferBackend { ServesRegisteredBuffers: true } registered)
        {
            _registeredRing = registeredRing;
            _registeredBackend = registered;
        }

        _backend = backend;
        _capacity = capacity;
        _maxIoBytes = maxIoBytes;
        _userCopy = userCopy;
        _pool = pool;
        _sink = sink;
        _waker = waker;
        _completed = new CompletionStack(depth);
        _operations = new TagOperation[depth];
        for (var tag = 0; tag < depth; tag++)
        {
            // Without USER_COPY the kernel copies data to and from a buffer registered per tag.
            var fixedBuffer = userCopy == null ? new IoBuffer(maxIoBytes) : null;
            _operations[tag] = new TagOperation(this, tag, fixedBuffer);
        }
    }

    /// <summary>Requests handed to the backend and not yet committed.</summary>
    public int InFlight { get; private set; }

    /// <summary>Requests dispatched since start.</summary>
    public long Requests { get; private set; }

    /// <summary>Requests the backend failed (exception or errno).</summary>
    public long BackendErrors { get; private set; }

    /// <summary>When set, new requests fail with EIO at once (a stop gave up on a hung backend).</summary>
    public bool FailNewRequests { get; set; }

    /// <summary>Address to register with FETCH/COMMIT for <paramref name="tag"/>: its fixed buffer, or 0 in USER_COPY mode.</summary>
    public ulong RegisteredBufferAddress(int tag) =>
        _operations[tag].FixedBuffer is { } buffer ? (ulong)buffer.Pointer : 0;

    /// <summary>Handles the request the kernel placed in <paramref name="desc"/> for <paramref name="tag"/>.</summary>
    public void Dispatch(int tag, in UblksrvIoDesc desc)
    {
        Requests++;
        var op = _operations[tag];
        var offset = (long)desc.StartSector << 9;
        var length = (long)desc.NrSectors << 9;
        if (FailNewRequests)
        {
            _sink.Commit(tag, -Errno.EIO, RegisteredBufferAddress(tag));
            return;
        }

        // A FLUSH carries no range (its start sector may be garbage); everything else must lie inside the device.
        if (desc.Op != UblkIoOp.Flush && (offset < 0 || length > _capacity.Bytes - offset))
        {
            _sink.Commit(tag, -Errno.EIO, RegisteredBufferAddress(tag));
            return;
        }

        op.Begin(desc.Op, offset, (int)Math.Min(length, int.MaxValue), WriteFlags(desc));
        Launch(op, StartGuarded(op, zeroCopy: (desc.OpFlags & UblkAbi.IoFlagNeedRegBuf) == 0, length));
    }

    /// <summary>Commits every request whose backend operation completed on another thread.</summary>
    public int DrainCompletions()
    {
        if (_completed.IsEmpty)
        {
            return 0;
        }

        var count = 0;
        var tag = _completed.TakeAll();
        while (tag != CompletionStack.Empty)
        {
            var next = _completed.Next(tag);
            InFlight--;
            Finish(_operations[tag]);
            count++;
            tag = next;
        }

        return count;
    }

    /// <summary>
    /// Gives up every request still waiting for the backend, so a stop cannot hang on it: each is
    /// failed with EIO, or, with <paramref name="leaveForNextServer"/> (a handover), left uncommitted
    /// like the requests held meanwhile, so that the kernel gives it to the next server (REISSUE)
    /// instead of failing it. The abandoned operations keep their buffers until the backend finally
    /// completes them, and their results are dropped.
    /// <para>
    /// Such a backend may still copy into the tag's request pages (<see cref="RegisteredBuffer.CopyIn"/>)
    /// after this: it cannot reach data anyone trusts. A request left for the next server is still the
    /// same request, which that server reads again; a newer request of the tag is failed with EIO at
    /// once (<see cref="FailNewRequests"/> stays set); and the kernel refuses a copy into a WRITE
    /// request's pages (EACCES), which hold the caller's data. A READ_FIXED already submitted holds
    /// its own reference to the pages it fills.
    /// </para>
    /// </summary>
    public void AbandonInFlight(bool leaveForNextServer = false)
    {
        FailNewRequests = true;
        _abandonSource.Cancel();
        for (var tag = 0; tag < _operations.Length; tag++)
        {
            var op = _operations[tag];
            if (!op.TryAbandon())
            {
                continue;
            }

            InFlight--;
            BackendErrors++;
            // The tag continues with a fresh operation (and buffer) while the old one drains.
            var replacement = new TagOperation(this, tag, op.FixedBuffer == null ? null : new IoBuffer(_maxIoBytes));
            _operations[tag] = replacement;
            if (!leaveForNextServer)
            {
                _sink.Commit(tag, -Errno.EIO, RegisteredBufferAddress(tag));
            }
        }
    }

    public void Dispose()
    {
        foreach (var op in _operations)
        {
            op.ReleaseWhenIdle();
        }

        _abandonSource.Dispose();
    }

    /// <summary>Commits at once when the backend completed inline, else waits for it (<see cref="TagOperation.AwaitBackend"/>).</summary>
    private void Launch(TagOperation op, ValueTask pending)
    {
        op.Pending = pending;
        if (pending.IsCompleted)
        {
            Finish(op);
            return;
        }

        InFlight++;
        op.AwaitBackend();
    }

    private ValueTask StartGuarded(TagOperation op, bool zeroCopy, long length)
    {
        try
        {
            return Start(op, zeroCopy, op.Offset, length);
        }
        catch (Exception e)
        {
            return ValueTask.FromException(e);
        }
    }

    /// <summary>
    /// Hands the request to the backend: straight from its registered pages when <paramref name="zeroCopy"/>
    /// allows and the backend takes it, else through a buffer (user copy or the per-tag buffer).
    /// </summary>
    private ValueTask Start(TagOperation op, bool zeroCopy, long offset, long length)
    {
        var token = _abandonSource.Token;
        if (zeroCopy && _registeredBackend != null && op.Op is (UblkIoOp.Read or UblkIoOp.Write))
        {
            var registered = new RegisteredBuffer(_registeredRing!, (ushort)op.Tag, CheckTransferLength(length));
            var started = op.Op == UblkIoOp.Read
                ? _registeredBackend.TryReadRegistered(offset, registered, token, out var pending)
                : _registeredBackend.TryWriteRegistered(offset, registered, op.WriteFlags, token, out pending);
            if (started)
            {
                op.ZeroCopy = true;
                return pending;
            }
        }

        switch (op.Op)
        {
            case UblkIoOp.Read:
                return _backend.ReadAsync(offset, op.AcquireBuffer(_pool, CheckTransferLength(length)), token);
            case UblkIoOp.Write:
            {
                var memory = op.AcquireBuffer(_pool, CheckTransferLength(length));
                if (_userCopy != null)
                {
                    var copied = _userCopy.ReadRequestData(op.Tag, op.BufferPointer, memory.Length);
                    if (copied < 0)
                    {
                        throw new BlockBackendException(-copied, "reading the request data from the ublk char device failed");
                    }
                }

                return _backend.WriteAsync(offset, memory, op.WriteFlags, token);
            }

            case UblkIoOp.Flush:
                return _backend.FlushAsync(token);
            case UblkIoOp.Discard:
                return _backend.DiscardAsync(offset, length, token);
            case UblkIoOp.WriteZeroes:
                return _backend.WriteZeroesAsync(offset, length, token);
            default:
                throw new BlockBackendException(Errno.EOPNOTSUPP, "operation not supported");
        }
    }

    private static BlockWriteFlags WriteFlags(in UblksrvIoDesc desc) =>
        (desc.OpFlags & UblkAbi.IoFlagFua) != 0 ? BlockWriteFlags.Fua : BlockWriteFlags.None;

    private int CheckTransferLength(long length)
    {
        if (length <= 0 || length > _maxIoBytes)
        {
            throw new BlockBackendException(Errno.EIO, "request length outside the negotiated maximum");
        }

        return (int)length;
    }

    /// <summary>Observes the backend result, copies READ data out, commits, releases the buffer.</summary>
    private void Finish(TagOperation op)
    {
        int result;
        try
        {
            op.Pending.GetAwaiter().GetResult();
            result = op.Op is UblkIoOp.Read or UblkIoOp.Write ? op.Length : 0;
            if (op.Op == UblkIoOp.Read && _userCopy != null && !op.ZeroCopy)
            {
                var copied = _userCopy.WriteRequestData(op.Tag, op.BufferPointer, op.Length);
                if (copied < 0)
                {
                    result = copied;
                }
            }
        }
        catch (BlockBackendException e) when (op.ZeroCopy && e.Errno == Errno.EINVAL)
        {
            // The request's pages are not aligned as the store's O_DIRECT needs (the device only
            // promises the block layer's 4-byte DMA alignment): serve it once more through a buffer.
            op.ZeroCopy = false;
            Launch(op, StartGuarded(op, zeroCopy: false, op.Length));
            return;
        }
        catch (BlockBackendException e) when (e.Errno is > 0 and < 4096)
        {
            BackendErrors++;
            result = -e.Errno;
            _failures?.Report(op.Op, e.Errno, e.Message);
        }
        catch (Exception e)
        {
            BackendErrors++;
            result = -Errno.EIO;
            _failures?.Report(op.Op, Errno.EIO, $"{e.GetType().Name}: {e.Message}");
        }

        op.Pending = default;
        op.ReleaseBuffer(_pool);
        op.End();
        if (op.FixedBuffer is { IsRetired: true } retired)
        {
            // The kernel may still read its pages (IoBuffer.Retire): the tag goes on with new ones.
            _operations[op.Tag] = new TagOperation(this, op.Tag, new IoBuffer(_maxIoBytes));
            ((IDisposable)retired).Dispose();
        }

        _sink.Commit(op.Tag, result, RegisteredBufferAddress(op.Tag));
    }

    private void OnBackendCompleted(int tag)
    {
        _completed.Push(tag);
        // On the queue thread itself (an operation on its ring completed) the loop drains the
        // stack before it waits again: no wake-up needed.
        if (Environment.CurrentManagedThreadId != _queueThreadId)
        {
            _waker.Signal();
        }
    }

    /// <summary>The state of one tag's request; created once per tag and reused for every request.</summary>
    private sealed class TagOperation
    {
        private const int Idle = 0;
        private const int Awaiting = 1;
        private const int Completed = 2;
        private const int Abandoned = 3;

        private readonly RequestDispatcher _owner;
        private readonly Action _onBackendCompleted;
        private IoBuffer? _buffer;
        private int _state;

        public TagOperation(RequestDispatcher owner, int tag, IoBuffer? fixedBuffer)
        {
            _owner = owner;
            Tag = tag;
            FixedBuffer = fixedBuffer;
            _onBackendCompleted = OnBackendCompleted;
        }

        public int Tag { get; }

        public IoBuffer? FixedBuffer { get; }

        public UblkIoOp Op { get; private set; }

        public int Length { get; private set; }

        public ValueTask Pending { get; set; }

        /// <summary>The backend moved the data straight to or from the request's registered pages: nothing to copy.</summary>
        public bool ZeroCopy { get; set; }

        public byte* BufferPointer => _buffer!.Pointer;

        public long Offset { get; private set; }

        public BlockWriteFlags WriteFlags { get; private set; }

        public void Begin(UblkIoOp op, long offset, int length, BlockWriteFlags writeFlags)
        {
            Op = op;
            Offset = offset;
            Length = length;
            WriteFlags = writeFlags;
            ZeroCopy = false;
            _state = Idle;
        }

        public void End() => _state = Idle;

        public Memory<byte> AcquireBuffer(IoBufferPool pool, int length)
        {
            _buffer = FixedBuffer ?? pool.Rent(length);
            return _buffer.Memory[..length];
        }

        public void ReleaseBuffer(IoBufferPool pool)
        {
            if (_buffer != null && _buffer != FixedBuffer)
            {
                pool.Return(_buffer);
            }

            _buffer = null;
        }

        /// <summary>Registers the cached continuation. The state is set first: the continuation may run at once.</summary>
        public void AwaitBackend()
        {
            Volatile.Write(ref _state, Awaiting);
            Pending.ConfigureAwait(false).GetAwaiter().UnsafeOnCompleted(_onBackendCompleted);
        }

        /// <summary>Queue thread: claims an awaiting operation so its late completion is discarded.</summary>
        public bool TryAbandon() => Interlocked.CompareExchange(ref _state, Abandoned, Awaiting) == Awaiting;

        /// <summary>Frees the fixed buffer unless an abandoned backend call may still use it.</summary>
        public void ReleaseWhenIdle()
        {
            // A backend call still running owns the buffer; its late completion frees it.
            if (Interlocked.CompareExchange(ref _state, Abandoned, Awaiting) == Awaiting)
            {
                return;
            }

            ReleaseBuffer(_owner._pool);
            ((IDisposable?)FixedBuffer)?.Dispose();
        }

        private void OnBackendCompleted()
        {
            if (Interlocked.CompareExchange(ref _state, Completed, Awaiting) == Awaiting)
            {
                _owner.OnBackendCompleted(Tag);
                return;
            }

            // Abandoned: the request was already failed; observe the result and drop the buffer.
            try
            {
                Pending.GetAwaiter().GetResult();
            }
            catch (Exception)
            {
                // Already reported to the kernel as EIO.
            }

            Pending = default;
            if (_buffer != null && _buffer != FixedBuffer)
            {
                _owner._pool.Return(_buffer);
            }
            else
            {
                ((IDisposable?)FixedBuffer)?.Dispose();
            }

            _buffer = null;
        }
    }
}
