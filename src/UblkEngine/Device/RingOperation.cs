using System.Buffers;
using System.Threading.Tasks.Sources;
using UblkCsi.Engine.Interop;
using UblkCsi.Engine.IoUring;

namespace UblkCsi.Engine;

internal enum RingOperationKind
{
    Read,
    Write,
    DataSync,

    /// <summary>IORING_OP_READ_FIXED into a request buffer the kernel registered (UBLK_F_AUTO_BUF_REG).</summary>
    ReadFixed,

    /// <summary>IORING_OP_WRITE_FIXED from a request buffer the kernel registered.</summary>
    WriteFixed,

    /// <summary>IORING_OP_READ_FIXED from a stream socket (always at file offset 0) into a request buffer the kernel registered.</summary>
    ReceiveFixed,

    /// <summary>IORING_OP_POLL_ADD for POLLIN: completes when the descriptor has something to read (or hung up).</summary>
    WaitReadable,
}

/// <summary>
/// One backend operation on a queue's ring, reused for every operation of its slot: the pending
/// ValueTask the backend returns is backed by this object, so nothing is allocated per I/O. The
/// buffer stays pinned until the kernel is done with it. A short transfer is continued; a read
/// that reaches the file's end fills the rest with zeros.
/// </summary>
internal sealed unsafe class RingOperation(QueueIo owner, int index) : IValueTaskSource
{
    private const uint PollIn = 0x0001;

    private ManualResetValueTaskSourceCore<bool> _core;
    private MemoryHandle _pin;
    private RingOperationKind _kind;
    private int _fd;
    private byte* _buffer;
    private int _length;
    private int _done;
    private long _offset;
    private ushort _bufferIndex;
    private ulong _bufferBase;

    /// <summary>1 once the current operation's result was taken (and its slot given back).</summary>
    private int _resultTaken;

    public ValueTask Start(RingOperationKind kind, int fd, Memory<byte> buffer, long offset)
    {
        _pin = buffer.Pin();
        _buffer = (byte*)_pin.Pointer;
        return Begin(kind, fd, buffer.Length, offset);
    }

    /// <summary>Starts an operation on all of <paramref name="registered"/>, a slot of the ring's buffer table (nothing to pin).</summary>
    public ValueTask StartRegistered(RingOperationKind kind, int fd, RegisteredBuffer registered, long offset)
    {
        UseRegistered(registered);
        return Begin(kind, fd, registered.Length, offset);
    }

    /// <summary>Starts a receive from a stream socket into <paramref name="registered"/>, <paramref name="bufferOffset"/> bytes in.</summary>
    public ValueTask StartReceiveRegistered(int fd, RegisteredBuffer registered, int bufferOffset, int length)
    {
        UseRegistered(registered);
        // The buffer offset rides in _offset: a socket has no file offset (it must be 0).
        return Begin(RingOperationKind.ReceiveFixed, fd, length, bufferOffset);
    }

    /// <summary>Starts a wait for <paramref name="fd"/> to become readable (nothing is transferred).</summary>
    public ValueTask StartWaitReadable(int fd)
    {
        _pin = default;
        _buffer = null;
        return Begin(RingOperationKind.WaitReadable, fd, 0, 0);
    }

    /// <summary>A readiness wait the kernel has not answered yet.</summary>
    public bool IsWaitingForReadable => _kind == RingOperationKind.WaitReadable && _core.GetStatus(_core.Version) == ValueTaskSourceStatus.Pending;

    /// <summary>
    /// Queue stopping: ends a readiness wait as if the descriptor were readable. Harmless by poll's
    /// own rules (a reader re-checks and finds nothing yet), and nothing was read, so no byte is lost.
    /// </summary>
    public void EndWaitEarly() => Complete(null);

    /// <summary>Fills <paramref name="sqe"/> for what is left of the operation.</summary>
    public void Prepare(IoUringSqe* sqe, ulong userData)
    {
        switch (_kind)
        {
            case RingOperationKind.Read:
                sqe->PrepareRead(_fd, _buffer + _done, (uint)(_length - _done), (ulong)(_offset + _done), userData);
                break;
            case RingOperationKind.Write:
                sqe->PrepareWrite(_fd, _buffer + _done, (uint)(_length - _done), (ulong)(_offset + _done), userData);
                break;
            case RingOperationKind.ReadFixed:
                // A kernel-registered request buffer starts at address 0: the address is the offset into it.
                sqe->PrepareReadFixed(_fd, _bufferIndex, _bufferBase + (ulong)_done, (uint)(_length - _done), (ulong)(_offset + _done), userData);
                break;
            case RingOperationKind.WriteFixed:
                sqe->PrepareWriteFixed(_fd, _bufferIndex, _bufferBase + (ulong)_done, (uint)(_length - _done), (ulong)(_offset + _done), userData);
                break;
            case RingOperationKind.ReceiveFixed:
                sqe->PrepareReadFixed(_fd, _bufferIndex, _bufferBase + (ulong)(_offset + _done), (uint)(_length - _done), 0, userData);
                break;
            case RingOperationKind.WaitReadable:
                sqe->PreparePollAdd(_fd, PollIn, userData);
                break;
            default:
                sqe->PrepareFsync(_fd, dataOnly: true, userData);
                break;
        }
    }

    /// <summary>Takes the kernel's result; true when the operation must be submitted again for the rest.</summary>
    public bool OnCompletion(int result)
    {
        if (result == -Errno.EINTR || result == -Errno.EAGAIN)
        {
            return true;
        }

        if (result < 0)
        {
            Complete(new BlockBackendException(-result, $"{Describe()} failed: {Errno.Describe(-result)}"));
            return false;
        }

        if (_kind is RingOperationKind.DataSync or RingOperationKind.WaitReadable)
        {
            Complete(null);
            return false;
        }

        _done += result;
        if (_done == _length)
        {
            Complete(null);
            return false;
        }

        if (result > 0)
        {
            return true;
        }

        if (_kind == RingOperationKind.Read && _buffer != null)
        {
            // The file's end (only if it was truncated behind the volume's back): zeros.
            new Span<byte>(_buffer + _done, _length - _done).Clear();
            Complete(null);
            return false;
        }

        Complete(new BlockBackendException(Errno.EIO, _kind == RingOperationKind.ReceiveFixed
            ? $"{Describe()}: the peer closed the connection after {_done} bytes"
            : $"{Describe()} transferred nothing at offset {_offset + _done}"));
        return false;
    }

    public ValueTaskSourceStatus GetStatus(short token) => _core.GetStatus(token);

    public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _core.OnCompleted(continuation, state, token, flags);

    public void GetResult(short token)
    {
        // A ValueTask is consumed once. The slot goes back to the ring here, so a second call, or a
        // call with an earlier operation's token, would hand out a slot another operation may hold.
        if (token != _core.Version || Interlocked.Exchange(ref _resultTaken, 1) != 0)
        {
            throw new InvalidOperationException("the result of this ring operation was already taken: a ValueTask can be awaited only once");
        }

        try
        {
            _core.GetResult(token);
        }
        finally
        {
            owner.Release(index);
        }
    }

    /// <summary>The operation's data is a slot of the ring's buffer table, not user memory: nothing to pin.</summary>
    private void UseRegistered(RegisteredBuffer registered)
    {
        _pin = default;
        _buffer = null;
        _bufferIndex = registered.Index;
        _bufferBase = registered.BaseAddress;
    }

    private ValueTask Begin(RingOperationKind kind, int fd, int length, long offset)
    {
        _core.Reset();
        _resultTaken = 0;
        _kind = kind;
        _fd = fd;
        _length = length;
        _done = 0;
        _offset = offset;
        return new ValueTask(this, _core.Version);
    }

    private void Complete(Exception? error)
    {
        _pin.Dispose();
        _pin = default;
        _buffer = null;
        if (error == null)
        {
            _core.SetResult(true);
        }
        else
        {
            _core.SetException(error);
        }
    }

    private string Describe() => _kind switch
    {
        RingOperationKind.Read => $"read of {_length} bytes at offset {_offset}",
        RingOperationKind.Write => $"write of {_length} bytes at offset {_offset}",
        RingOperationKind.ReadFixed => $"zero-copy read of {_length} bytes at offset {_offset}",
        RingOperationKind.WriteFixed => $"zero-copy write of {_length} bytes at offset {_offset}",
        RingOperationKind.ReceiveFixed => $"zero-copy receive of {_length} bytes from socket {_fd}",
        RingOperationKind.WaitReadable => $"wait for descriptor {_fd} to become readable",
        _ => "fdatasync",
    };
}
