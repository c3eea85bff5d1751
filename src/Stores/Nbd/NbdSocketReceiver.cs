using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Threading.Tasks.Sources;
using UblkCsi.Engine;
using UblkCsi.Linux;
using UblkCsi.Stores.Internal;

namespace UblkCsi.Stores.Nbd;

/// <summary>
/// Where a connection's receive loop gets its bytes. Once an engine queue thread has sent on a plain
/// socket connection, the loop moves onto that thread: it waits for the socket on the queue's own
/// io_uring (a poll) and reads it with non-blocking recv, so a reply completes its request on the
/// thread that commits it to the kernel, with no thread-pool worker, no eventfd write and no thread
/// hop in between (ublksrv's nbd target receives on its queue ring too). A poll consumes nothing, so
/// a queue that stops while the loop waits loses no byte. Off queue threads (before any queue thread
/// sent, after its queue stopped) the loop waits in poll(2) on a reader thread of its own, never
/// through the runtime's socket engine (<see cref="NbdBlockingStream"/> says why); on TLS it always
/// reads through the stream (only the stream can decrypt).
/// </summary>
internal sealed class NbdSocketReceiver : IQueueBatchListener, IValueTaskSource<bool>
{
    /// <summary>The receiver whose reader thread the current thread is (<see cref="ReadOffQueueAsync"/>).</summary>
    [ThreadStatic]
    private static NbdSocketReceiver? t_readerOf;

    private readonly Socket _socket;
    private readonly Stream _stream;
    private readonly bool _canMoveToQueue;
    private QueueIo? _home;
    private ManualResetValueTaskSourceCore<bool> _arrival;
    private long _readsOnQueueThread;
    private long _zeroCopyReceives;

    /// <param name="canMoveToQueue">False for TLS: every read goes through the stream.</param>
    public NbdSocketReceiver(Socket socket, Stream stream, bool canMoveToQueue)
    {
        _socket = socket;
        _stream = stream;
        _canMoveToQueue = canMoveToQueue;
        // Arriving on the queue thread is the point: the loop continues there, inline.
        _arrival.RunContinuationsAsynchronously = false;
    }

    /// <summary>Reads that were served on an engine queue thread (tests: the hop-free path is taken).</summary>
    public long ReadsOnQueueThread => Interlocked.Read(ref _readsOnQueueThread);

    /// <summary>Payloads received straight into a request's registered pages (tests and the kernel suite: zero copy is taken).</summary>
    public long ZeroCopyReceives => Interlocked.Read(ref _zeroCopyReceives);

    /// <summary>Engine queue thread that just sent on the connection: the first one to do so becomes the loop's home.</summary>
    public void OfferHome(QueueIo queue)
    {
        if (_canMoveToQueue && _home is null)
        {
            Interlocked.CompareExchange(ref _home, queue, null);
        }
    }

    /// <summary>Reads at least one byte into <paramref name="destination"/>; 0 when the server closed the connection.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<int> ReadAsync(Memory<byte> destination, CancellationToken cancellationToken)
    {
        while (true)
        {
            var home = Volatile.Read(ref _home);
            if (home is null)
            {
                return await ReadOffQueueAsync(destination, cancellationToken).ConfigureAwait(false);
            }

            if (QueueIo.Current != home)
            {
                if (!await MoveToAsync(home).ConfigureAwait(false))
                {
                    // The queue stopped: back to the thread pool (a later queue thread may offer itself).
                    Interlocked.CompareExchange(ref _home, null, home);
                }

                continue;
            }

            var received = TryReceive(destination.Span);
            if (received >= 0)
            {
                Interlocked.Increment(ref _readsOnQueueThread);
                return received;
            }

            if (!await TryWaitReadableAsync(home).ConfigureAwait(false))
            {
                // Every operation slot of the queue is busy: this one read waits off the queue thread.
                return await ReadOffQueueAsync(destination, cancellationToken).ConfigureAwait(false);
            }
        }
    }

    /// <summary>
    /// On the queue thread whose ring is <paramref name="ring"/>: waits there until the socket reads
    /// as ready, which on TCP means its SO_RCVLOWAT bytes have arrived, and returns true; nothing is
    /// read. False, having waited for nothing, anywhere else or when the ring has no free slot.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<bool> TryWaitReadableAsync(QueueIo ring)
    {
        if (!_canMoveToQueue || QueueIo.Current != ring)
        {
            return false;
        }

        var fd = ReferenceSocket();
        try
        {
            if (!ring.TryWaitReadable(fd, out var readable))
            {
                return false;
            }

            await readable.ConfigureAwait(false);
            return true;
        }
        finally
        {
            _socket.SafeHandle.DangerousRelease();
        }
    }

    /// <summary>
    /// On the queue thread that owns <paramref name="target"/>: receives exactly <paramref name="length"/>
    /// bytes into the request's registered pages, <paramref name="offset"/> bytes in (READ_FIXED on the
    /// socket), and returns true. False, having read nothing, anywhere else or when the ring has no free slot.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<bool> TryReceiveRegisteredAsync(RegisteredBuffer target, int offset, int length)
    {
        if (!_canMoveToQueue || QueueIo.Current != target.Ring)
        {
            return false;
        }

        var fd = ReferenceSocket();
        try
        {
            if (!target.Ring.TryReceiveRegistered(fd, target, offset, length, out var receive))
            {
                return false;
            }

            await receive.ConfigureAwait(false);
            Interlocked.Increment(ref _zeroCopyReceives);
            return true;
        }
        finally
        {
            _socket.SafeHandle.DangerousRelease();
        }
    }

    /// <summary>
    /// A read off queue threads: through the stream on TLS; on a plain socket, on this receiver's
    /// reader thread (started here when the loop is not on it), waiting in poll(2). The thread ends
    /// once the loop moves to a queue thread. Closing the connection shuts the socket down, which
    /// ends the wait.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<int> ReadOffQueueAsync(Memory<byte> destination, CancellationToken cancellationToken)
    {
        if (!_canMoveToQueue)
        {
            return await _stream.ReadAsync(destination, cancellationToken).ConfigureAwait(false);
        }

        if (t_readerOf != this)
        {
            await new ReaderThreadStart(this);
        }

        while (true)
        {
            var received = TryReceive(destination.Span);
            if (received >= 0)
            {
                return received;
            }

            _socket.Poll(-1, SelectMode.SelectRead);
        }
    }

    /// <summary>Queue thread: the loop's move has arrived; it continues here, inline.</summary>
    public void OnQueueBatchEnd() => _arrival.SetResult(true);

    public bool GetResult(short token) => _arrival.GetResult(token);

    public ValueTaskSourceStatus GetStatus(short token) => _arrival.GetStatus(token);

    public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _arrival.OnCompleted(continuation, state, token, flags);

    /// <summary>Continues on <paramref name="home"/>'s thread; false when that queue has stopped.</summary>
    private ValueTask<bool> MoveToAsync(QueueIo home)
    {
        _arrival.Reset();
        return home.TryPost(this) ? new ValueTask<bool>(this, _arrival.Version) : new ValueTask<bool>(false);
    }

    /// <summary>
    /// The socket's descriptor for an operation on a queue ring, referenced until the caller releases
    /// it (<c>SafeHandle.DangerousRelease</c>) after the operation ended: its number cannot pass to
    /// another file meanwhile. Closing the connection shuts the socket down first, which ends a poll
    /// or a receive still in the kernel.
    /// </summary>
    private int ReferenceSocket()
    {
        var referenced = false;
        _socket.SafeHandle.DangerousAddRef(ref referenced);
        return (int)_socket.SafeHandle.DangerousGetHandle();
    }

    /// <summary>Non-blocking recv: the byte count (0 = closed), or -1 when nothing has arrived yet.</summary>
    private unsafe int TryReceive(Span<byte> destination)
    {
        fixed (byte* target = destination)
        {
            while (true)
            {
                var n = Libc.Recv(_socket.SafeHandle, target, (nuint)destination.Length, Libc.MSG_DONTWAIT);
                if (n >= 0)
                {
                    return (int)n;
                }

                var errno = Libc.LastErrno;
                if (errno == LinuxFile.EAGAIN)
                {
                    return -1;
                }

                if (errno != LinuxFile.EINTR)
                {
                    throw new IOException($"recv failed with errno {errno}");
                }
            }
        }
    }

    /// <summary>Awaited to continue on a new reader thread of <paramref name="receiver"/>.</summary>
    private readonly struct ReaderThreadStart(NbdSocketReceiver receiver) : ICriticalNotifyCompletion
    {
        public bool IsCompleted => false;

        public ReaderThreadStart GetAwaiter() => this;

        public void GetResult()
        {
        }

        public void OnCompleted(Action continuation) => UnsafeOnCompleted(continuation);

        public void UnsafeOnCompleted(Action continuation)
        {
            var owner = receiver;
            new Thread(() =>
            {
                t_readerOf = owner;
                continuation();
            })
            { IsBackground = true, Name = "nbd-receive" }.Start();
        }
    }
}
