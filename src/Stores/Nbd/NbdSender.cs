using System.Net.Sockets;
using UblkCsi.Engine;
using UblkCsi.Linux;
using UblkCsi.Stores.Internal;

namespace UblkCsi.Stores.Nbd;

/// <summary>
/// Writes a connection's requests to its socket, whole and in order. A request submitted on an engine
/// queue thread is sent by that thread once the queue has dispatched its batch: one non-blocking send
/// carries everything the batch queued (ublksrv's nbd target), so the request costs no thread wake-up.
/// A sender thread writes what other threads submit, what is left when the socket buffer is full, and
/// everything on a TLS stream (only the stream can write its records). Whoever writes holds the writer
/// role, so two writers never interleave their bytes.
/// </summary>
internal sealed unsafe class NbdSender : IQueueBatchListener
{
    private const int BufferBytes = 256 * 1024;

    /// <summary>Writes up to this size are copied into the buffer (one system call for many requests).</summary>
    private const int CopyWritesUpTo = 64 * 1024;

    private readonly Socket _socket;
    private readonly Stream _stream;
    private readonly bool _sendsOnQueueThreads;
    private readonly string _server;
    private readonly Action<Exception> _onFailure;

    // A plain queue under its monitor, not a ConcurrentQueue: that allocates a new segment every so many items.
    private readonly Queue<NbdRequest> _queued = new(256);
    private bool _writerBusy;
    private bool _handOff;
    private bool _closed;

    // Owned by the writer role: requests taken from the queue but not yet serialized, and the bytes
    // serialized but not yet sent (the buffer's unsent part, then a large WRITE's own payload).
    private readonly Queue<NbdRequest> _taken = new(256);
    private readonly byte[] _buffer = new byte[BufferBytes];
    private int _bufferSent;
    private int _bufferUsed;
    private ReadOnlyMemory<byte> _payload;
    private bool _payloadByReference;
    private readonly NbdPayloadPipe? _pipe;

    private readonly Thread _thread;
    private long _queueThreadBatches;
    private long _senderThreadBatches;
    private long _pipedBytes;

    /// <param name="sendsOnQueueThreads">False for TLS: the sender thread writes every request through the stream.</param>
    public NbdSender(Socket socket, Stream stream, bool sendsOnQueueThreads, string server, Action<Exception> onFailure)
    {
        _socket = socket;
        _stream = stream;
        _sendsOnQueueThreads = sendsOnQueueThreads;
        _server = server;
        _onFailure = onFailure;
        _pipe = sendsOnQueueThreads ? NbdPayloadPipe.TryCreate(socket.SafeHandle) : null;
        _thread = new Thread(Run) { IsBackground = true, Name = "nbd-send" };
    }

    /// <summary>Batches an engine queue thread sent itself (tests: the wake-up-free path is taken).</summary>
    public long QueueThreadBatches => Interlocked.Read(ref _queueThreadBatches);

    /// <summary>Batches the sender thread sent.</summary>
    public long SenderThreadBatches => Interlocked.Read(ref _senderThreadBatches);

    /// <summary>WRITE payload bytes that went through the pipe, not copied by send (tests: the copy-free path is taken).</summary>
    public long PipedBytes => Interlocked.Read(ref _pipedBytes);

    public void Start() => _thread.Start();

    /// <summary>Queues <paramref name="request"/> (its handle set); dropped when closed (the connection's failure hands it back).</summary>
    public void Enqueue(NbdRequest request)
    {
        var queueIo = _sendsOnQueueThreads ? QueueIo.Current : null;
        lock (_queued)
        {
            if (_closed)
            {
                return;
            }

            _queued.Enqueue(request);
            if (queueIo is null && !_writerBusy)
            {
                Monitor.Pulse(_queued);
            }
        }

        // Sent at the batch end, with every other request of the batch; if a writer holds the role
        // now, it takes this one before it lets go, and the batch end finds nothing to do.
        queueIo?.CallAtBatchEnd(this);
    }

    /// <summary>Queue thread, after its batch: sends what is queued without blocking; the sender thread finishes what does not fit.</summary>
    public void OnQueueBatchEnd()
    {
        lock (_queued)
        {
            if (_writerBusy || _closed || _queued.Count == 0)
            {
                return;
            }

            _writerBusy = true;
        }

        try
        {
            Interlocked.Increment(ref _queueThreadBatches);
            if (Pump(blocking: false))
            {
                return;
            }

            lock (_queued)
            {
                // The socket buffer is full: the role passes to the sender thread, which may block.
                _handOff = true;
                Monitor.Pulse(_queued);
            }
        }
        catch (Exception e)
        {
            _onFailure(e);
        }
    }

    /// <summary>Stops sending; queued requests stay with the connection (its failure hands them back).</summary>
    public void Close()
    {
        lock (_queued)
        {
            _closed = true;
            Monitor.PulseAll(_queued);
        }

        // A writer still splicing keeps the descriptors open until its call returns (SafeHandle).
        _pipe?.Dispose();
    }

    public bool Join(TimeSpan timeout) => !_thread.IsAlive || _thread.Join(timeout);

    private void Run()
    {
        try
        {
            while (true)
            {
                lock (_queued)
                {
                    while (!_closed && !_handOff && (_writerBusy || _queued.Count == 0))
                    {
                        Monitor.Wait(_queued);
                    }

                    if (_closed)
                    {
                        return;
                    }

                    if (_handOff)
                    {
                        _handOff = false; // the role came with it
                    }
                    else
                    {
                        _writerBusy = true;
                    }
                }

                Interlocked.Increment(ref _senderThreadBatches);
                Pump(blocking: true);
            }
        }
        catch (Exception e)
        {
            _onFailure(e);
        }
    }

    /// <summary>
    /// Writer role: sends until nothing is queued (the role is then released; true) or, when not
    /// <paramref name="blocking"/>, until the socket takes no more (false; the role is kept for the hand-off).
    /// </summary>
    private bool Pump(bool blocking)
    {
        while (true)
        {
            if (!SendSerialized(blocking))
            {
                return false;
            }

            if (_taken.Count == 0)
            {
                lock (_queued)
                {
                    if (_queued.Count == 0 || _closed)
                    {
                        _writerBusy = false;
                        return true;
                    }

                    while (_queued.TryDequeue(out var request))
                    {
                        _taken.Enqueue(request);
                    }
                }
            }

            Serialize();
        }
    }

    /// <summary>Fills the buffer with taken requests, up to its end or a WRITE whose payload is sent from its own memory.</summary>
    private void Serialize()
    {
        _bufferSent = 0;
        _bufferUsed = 0;
        while (_bufferUsed + NbdProtocol.RequestHeaderSize <= _buffer.Length && _taken.TryDequeue(out var request))
        {
            NbdProtocol.WriteRequestHeader(_buffer.AsSpan(_bufferUsed), request.Command, request.Flags, request.Handle, request.Offset, request.Length);
            _bufferUsed += NbdProtocol.RequestHeaderSize;
            if (request.Command != NbdCommand.Write)
            {
                continue;
            }

            var data = request.WriteData;
            if (data.Length <= CopyWritesUpTo && data.Length <= _buffer.Length - _bufferUsed)
            {
                data.Span.CopyTo(_buffer.AsSpan(_bufferUsed));
                _bufferUsed += data.Length;
                continue;
            }

            _payload = data;
            _payloadByReference = _pipe?.CanCarry(data) == true;
            if (_payloadByReference)
            {
                // Before the first page goes out: a failure of the connection must see it (NbdConnection.Fail).
                request.PayloadByReference = true;
            }

            return;
        }
    }

    /// <summary>Sends what is serialized; false when a non-blocking send found the socket buffer full.</summary>
    private bool SendSerialized(bool blocking)
    {
        while (_bufferSent < _bufferUsed)
        {
            var sent = Send(_buffer.AsSpan(_bufferSent, _bufferUsed - _bufferSent), blocking);
            if (sent == 0)
            {
                return false;
            }

            _bufferSent += sent;
        }

        while (!_payload.IsEmpty || _pipe is { Buffered: > 0 })
        {
            if (_payloadByReference && _pipe is { Buffered: 0 } && !_payload.IsEmpty)
            {
                var piped = _pipe.Fill(_payload.Span);
                _payload = _payload[piped..];
                Interlocked.Add(ref _pipedBytes, piped);
            }

            if (_pipe is { Buffered: > 0 })
            {
                if (_pipe.Drain() == 0 && !WaitUntilWritable(blocking))
                {
                    return false;
                }

                continue;
            }

            var sent = Send(_payload.Span, blocking);
            if (sent == 0)
            {
                return false;
            }

            _payload = _payload[sent..];
        }

        return true;
    }

    /// <summary>The socket is full: false when not <paramref name="blocking"/>, else waits until it takes bytes again.</summary>
    private bool WaitUntilWritable(bool blocking)
    {
        if (!blocking)
        {
            return false;
        }

        // Bounded waits: a connection closed meanwhile must end the sender thread.
        while (!_socket.Poll(TimeSpan.FromMilliseconds(200), SelectMode.SelectWrite))
        {
            if (Volatile.Read(ref _closed))
            {
                throw new IOException($"connection to {_server} closed while sending");
            }
        }

        return true;
    }

    /// <summary>Bytes the socket took (at least one when blocking); 0 when it would block.</summary>
    private int Send(ReadOnlySpan<byte> bytes, bool blocking)
    {
        if (blocking && !_sendsOnQueueThreads)
        {
            // TLS: only the stream can write its records.
            _stream.Write(bytes);
            return bytes.Length;
        }

        while (true)
        {
            var sent = TrySend(bytes);
            if (sent > 0 || !WaitUntilWritable(blocking))
            {
                return sent;
            }
        }
    }

    /// <summary>A non-blocking send: the bytes the socket took, 0 when its buffer is full.</summary>
    private int TrySend(ReadOnlySpan<byte> bytes)
    {
        fixed (byte* start = bytes)
        {
            while (true)
            {
                var sent = Libc.Send(_socket.SafeHandle, start, (nuint)bytes.Length, Libc.MSG_DONTWAIT | Libc.MSG_NOSIGNAL);
                if (sent >= 0)
                {
                    return (int)sent;
                }

                var errno = Libc.LastErrno;
                if (errno == LinuxFile.EAGAIN)
                {
                    return 0;
                }

                if (errno != LinuxFile.EINTR)
                {
                    throw new IOException($"connection to {_server} lost while sending: send failed with errno {errno}");
                }
            }
        }
    }
}
