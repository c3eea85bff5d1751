using System.Buffers.Binary;
using System.Diagnostics;
using System.Net.Sockets;
using UblkCsi.Engine;
using UblkCsi.Stores.Internal;

namespace UblkCsi.Stores.Nbd;

/// <summary>Told when a connection is lost, with the requests it still carried (to be sent again).</summary>
internal interface INbdConnectionOwner
{
    void OnConnectionLost(NbdConnection connection, Exception reason, List<NbdRequest> unanswered);
}

/// <summary>
/// One connection in the transmission phase. Many requests are in flight at once, each under a
/// handle naming its slot in a table (plus a generation, so a stale or invented handle is caught);
/// an <see cref="NbdSender"/> writes queued requests in batches and a receive loop matches replies, simple or
/// structured, to their requests. Anything wrong on the stream (closed, a broken reply, no reply
/// within the request timeout) ends the connection: the owner gets every unanswered request back.
/// </summary>
internal sealed class NbdConnection : IAsyncDisposable
{
    private readonly Socket _socket;
    private readonly Stream _stream;
    private readonly INbdConnectionOwner _owner;
    private readonly NbdSocketReceiver _receiver;
    private readonly NbdReceiveBuffer _receive;
    private readonly NbdSender _sender;
    private readonly byte[] _replyHeader = new byte[NbdProtocol.StructuredReplyHeaderSize];
    private readonly byte[] _scratch = new byte[NbdProtocol.MaxControlPayload];
    private readonly Lock _lock = new();
    private readonly long _requestTimeoutTicks;
    private long _lastReplyTicks = Stopwatch.GetTimestamp();
    private NbdRequest?[] _slots = new NbdRequest?[64];
    private uint[] _generations = new uint[64];
    private readonly Stack<int> _freeSlots = new(Enumerable.Range(0, 64).Reverse());
    private bool _failed;
    private Exception? _failure;

    // The request whose reply the receive loop is reading (it may write into the request's buffer
    // and reply state), and whether a failure meanwhile left it for the loop to hand back.
    private NbdRequest? _inHand;
    private bool _inHandWithheld;
    private Task _receiveLoop = Task.CompletedTask;
    private Timer? _watchdog;

    public NbdConnection(Socket socket, Stream stream, NbdExport export, string server, INbdConnectionOwner owner, TimeSpan requestTimeout)
    {
        _socket = socket;
        _stream = stream;
        Export = export;
        Server = server;
        _owner = owner;
        // A plain stream, not TLS: only TLS needs the stream itself to frame and decrypt its records, so
        // plain connections are read and written on the socket by engine queue threads.
        var plain = stream is NetworkStream;
        _receiver = new NbdSocketReceiver(socket, stream, canMoveToQueue: plain);
        _receive = new NbdReceiveBuffer(_receiver, server, lowWaterSocket: plain && socket.ProtocolType == ProtocolType.Tcp ? socket : null);
        _sender = new NbdSender(socket, stream, sendsOnQueueThreads: plain, server, e => Fail(Lost(e, "sending")));
        _requestTimeoutTicks = (long)(requestTimeout.TotalSeconds * Stopwatch.Frequency);
    }

    public NbdExport Export { get; }

    public string Server { get; }

    /// <summary>Send batches written by engine queue threads and by the sender thread (tests: which path carried the I/O).</summary>
    public (long OnQueueThreads, long OnSenderThread) SentBatches => (_sender.QueueThreadBatches, _sender.SenderThreadBatches);

    /// <summary>WRITE payload bytes sent through the payload pipe (tests).</summary>
    public long PipedBytes => _sender.PipedBytes;

    /// <summary>READ payloads received straight into registered request pages (tests).</summary>
    public long ZeroCopyReceives => _receiver.ZeroCopyReceives;

    /// <summary>Socket reads done on an engine queue thread's ring (tests).</summary>
    public long ReadsOnQueueThread => _receiver.ReadsOnQueueThread;

    /// <summary>The socket's descriptor number (tests: whether an epoll set watches it).</summary>
    public int SocketDescriptor => (int)_socket.Handle;

    public bool IsFailed
    {
        get
        {
            lock (_lock)
            {
                return _failed;
            }
        }
    }

    public void Start(TimeSpan watchdogPeriod)
    {
        _sender.Start();
        _receiveLoop = Task.Run(ReceiveLoopAsync);
        _watchdog = new Timer(static state => ((NbdConnection)state!).CheckForLostReplies(), this, watchdogPeriod, watchdogPeriod);
    }

    /// <summary>Queues a request for sending; false when this connection is already lost (send it elsewhere).</summary>
    public bool TrySubmit(NbdRequest request)
    {
        lock (_lock)
        {
            if (_failed)
            {
                return false;
            }

            if (_freeSlots.Count == 0)
            {
                Grow();
            }

            var slot = _freeSlots.Pop();
            var generation = ++_generations[slot];
            request.Handle = ((ulong)generation << 32) | (uint)slot;
            request.Attempts++;
            request.ResetReply();
            request.SentAtTicks = Stopwatch.GetTimestamp();
            _slots[slot] = request;
        }

        // After a failure the request is in the slot table, so the failure hands it to the owner either way.
        _sender.Enqueue(request);
        if (QueueIo.Current is { } queue)
        {
            // Replies are then received on that queue thread, which commits them.
            _receiver.OfferHome(queue);
        }

        return true;
    }

    /// <summary>Ends the connection: every unanswered request goes back to the owner.</summary>
    public void Fail(Exception reason)
    {
        List<NbdRequest> unanswered;
        lock (_lock)
        {
            if (_failed)
            {
                return;
            }

            _failed = true;
            _failure = reason;
            unanswered = new List<NbdRequest>();
            for (var i = 0; i < _slots.Length; i++)
            {
                if (_slots[i] is { } request)
                {
                    _slots[i] = null;
                    if (request == _inHand)
                    {
                        // The receive loop is still writing into it: sent again now, it could be
                        // answered on the next connection and its buffer reused while this loop
                        // still writes there. The loop hands it back when it lets go (ReleaseInHand).
                        _inHandWithheld = true;
                        continue;
                    }

                    unanswered.Add(request);
                }
            }
        }

        // Oldest first, so reissued requests keep roughly their original order.
        unanswered.Sort(static (a, b) => a.SentAtTicks.CompareTo(b.SentAtTicks));
        Close();
        // After the socket is shut down, so no payload can go out by reference after this look.
        foreach (var request in unanswered)
        {
            NbdPayloadPipe.RetireIfShared(request);
        }

        _owner.OnConnectionLost(this, reason, unanswered);
    }

    /// <summary>Soft disconnect when idle (NBD_CMD_DISC), then close. Requests still in flight are handed back to the owner.</summary>
    public async ValueTask DisposeAsync()
    {
        var idle = false;
        lock (_lock)
        {
            idle = !_failed && Array.TrueForAll(_slots, s => s is null);
        }

        if (idle)
        {
            try
            {
                var header = new byte[NbdProtocol.RequestHeaderSize];
                NbdProtocol.WriteRequestHeader(header, NbdCommand.Disconnect, NbdCommandFlags.None, 0, 0, 0);
                _sender.Close();
                await Task.Run(() => _sender.Join(TimeSpan.FromSeconds(2))).ConfigureAwait(false);
                using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(2));
                await _stream.WriteAsync(header, timeout.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or ObjectDisposedException or TimeoutException)
            {
                // The server is gone already; closing is all that is left.
            }
        }

        Fail(new ObjectDisposedException(nameof(NbdConnection), "the connection was closed"));
        await Task.Run(() => _sender.Join(TimeSpan.FromSeconds(5))).ConfigureAwait(false);
        await _receiveLoop.WaitAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
    }

    /// <summary>
    /// Shuts the socket down, which ends a poll or a receive that a queue ring holds on it and so the
    /// receive loop, which then releases the socket (<see cref="ReleaseTransport"/>). Not disposed
    /// here: disposing a socket waits, spinning, until every operation holding it has let go, and an
    /// operation on a queue ring lets go only when that queue thread reaps it; called on that very
    /// thread (a send at its batch end that failed), the wait would never end and the queue's
    /// requests would hang.
    /// </summary>
    private void Close()
    {
        _sender.Close();
        _watchdog?.Dispose();
        try
        {
            _socket.Shutdown(SocketShutdown.Both);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            // Already disconnected.
        }
    }

    /// <summary>The receive loop has ended (after <see cref="Close"/>): nothing reads the socket any more.</summary>
    private void ReleaseTransport()
    {
        // On the thread pool: a sender still inside a send lets go of the socket only when that call
        // returns (the shutdown makes it return), and a queue thread must not wait for that.
        ThreadPool.UnsafeQueueUserWorkItem(static connection =>
        {
            connection._socket.Dispose();
            connection._stream.Dispose();
        }, this, preferLocal: false);
    }

    private void Grow()
    {
        var old = _slots.Length;
        Array.Resize(ref _slots, old * 2);
        Array.Resize(ref _generations, old * 2);
        for (var i = (old * 2) - 1; i >= old; i--)
        {
            _freeSlots.Push(i);
        }
    }

    /// <summary>
    /// The request a reply names, held by the receive loop until <see cref="ReleaseInHand"/>, or a
    /// protocol error for a handle this connection never sent (or already answered).
    /// </summary>
    private NbdRequest Find(ulong handle)
    {
        var slot = (int)(uint)handle;
        lock (_lock)
        {
            if (slot < _slots.Length && _slots[slot] is { } request && request.Handle == handle)
            {
                _inHand = request;
                return request;
            }
        }

        throw new NbdProtocolException($"{Server} replied to handle 0x{handle:x16}, which names no request in flight");
    }

    /// <summary>The receive loop is done with the request it found; one the connection's failure left to it goes to the owner now.</summary>
    private void ReleaseInHand()
    {
        NbdRequest? withheld;
        Exception? reason;
        lock (_lock)
        {
            withheld = _inHandWithheld ? _inHand : null;
            reason = _failure;
            _inHand = null;
            _inHandWithheld = false;
        }

        if (withheld is not null)
        {
            NbdPayloadPipe.RetireIfShared(withheld);
            _owner.OnConnectionLost(this, reason!, [withheld]);
        }
    }

    /// <summary>Frees the request's slot; false when the connection failed meanwhile (the owner has the request then).</summary>
    private bool TryRemove(NbdRequest request)
    {
        var slot = (int)(uint)request.Handle;
        lock (_lock)
        {
            if (_failed || _slots[slot] != request)
            {
                return false;
            }

            _slots[slot] = null;
            _freeSlots.Push(slot);
            return true;
        }
    }

    /// <summary>
    /// The connection is lost when a request has waited longer than the request timeout and the server
    /// has sent nothing for as long. A server that keeps answering is slow, not gone, however deep the
    /// queue before it: reissuing that queue on a new connection would only send it twice, and a write
    /// the old connection's server still runs late could land over a newer one.
    /// </summary>
    private void CheckForLostReplies()
    {
        var now = Stopwatch.GetTimestamp();
        if (now - Volatile.Read(ref _lastReplyTicks) <= _requestTimeoutTicks)
        {
            return;
        }

        NbdRequest? late = null;
        lock (_lock)
        {
            foreach (var request in _slots)
            {
                if (request is not null && now - request.SentAtTicks > _requestTimeoutTicks)
                {
                    late = request;
                    break;
                }
            }
        }

        if (late is not null)
        {
            Fail(new TimeoutException(
                $"{Server} did not answer a {late.Command} of {late.Length} bytes at {late.Offset}, nor anything else, within {_requestTimeoutTicks / Stopwatch.Frequency} s"));
        }
    }

    private async Task ReceiveLoopAsync()
    {
        var token = CancellationToken.None;
        try
        {
            while (true)
            {
                await _receive.ReadExactAsync(_replyHeader.AsMemory(0, NbdProtocol.SimpleReplySize), token).ConfigureAwait(false);
                Volatile.Write(ref _lastReplyTicks, Stopwatch.GetTimestamp());
                var magic = BinaryPrimitives.ReadUInt32BigEndian(_replyHeader);
                if (magic == NbdProtocol.SimpleReplyMagic)
                {
                    try
                    {
                        await SimpleReplyAsync(token).ConfigureAwait(false);
                    }
                    finally
                    {
                        ReleaseInHand();
                    }
                }
                else if (magic == NbdProtocol.StructuredReplyMagic && Export.StructuredReplies)
                {
                    await _receive.ReadExactAsync(_replyHeader.AsMemory(NbdProtocol.SimpleReplySize, 4), token).ConfigureAwait(false);
                    try
                    {
                        await StructuredChunkAsync(token).ConfigureAwait(false);
                    }
                    finally
                    {
                        ReleaseInHand();
                    }
                }
                else
                {
                    throw new NbdProtocolException($"{Server} sent a reply with magic 0x{magic:x8}; expected a simple{(Export.StructuredReplies ? " or structured" : "")} reply");
                }
            }
        }
        catch (Exception e)
        {
            Fail(Lost(e, "receiving"));
        }
        finally
        {
            ReleaseTransport();
        }
    }

    private async ValueTask SimpleReplyAsync(CancellationToken token)
    {
        var error = BinaryPrimitives.ReadUInt32BigEndian(_replyHeader.AsSpan(4));
        var request = Find(BinaryPrimitives.ReadUInt64BigEndian(_replyHeader.AsSpan(8)));
        if (request.Command == NbdCommand.Read && Export.StructuredReplies)
        {
            throw new NbdProtocolException($"{Server} answered a READ with a simple reply after agreeing to structured replies");
        }

        if (error == 0 && request.Command == NbdCommand.Read)
        {
            await ReceivePayloadAsync(request, 0, (int)request.Length, token).ConfigureAwait(false);
        }

        request.ReplyErrno = (int)Math.Min(error, int.MaxValue);
        Finish(request);
    }

    private async ValueTask StructuredChunkAsync(CancellationToken token)
    {
        var flags = (NbdReplyFlags)BinaryPrimitives.ReadUInt16BigEndian(_replyHeader.AsSpan(4));
        var type = (NbdReplyType)BinaryPrimitives.ReadUInt16BigEndian(_replyHeader.AsSpan(6));
        var request = Find(BinaryPrimitives.ReadUInt64BigEndian(_replyHeader.AsSpan(8)));
        var length = BinaryPrimitives.ReadUInt32BigEndian(_replyHeader.AsSpan(16));
        switch (type)
        {
            case NbdReplyType.OffsetData:
                if (request.Command != NbdCommand.Read || length < 8 || length - 8 > request.Length)
                {
                    throw new NbdProtocolException($"{Server} sent a data chunk of {length} bytes for a {request.Command} of {request.Length} bytes");
                }

                await _receive.ReadExactAsync(_scratch.AsMemory(0, 8), token).ConfigureAwait(false);
                var dataOffset = CheckChunkRange(request, BinaryPrimitives.ReadUInt64BigEndian(_scratch), length - 8);
                Cover(request, dataOffset, (int)(length - 8));
                await ReceivePayloadAsync(request, dataOffset, (int)(length - 8), token).ConfigureAwait(false);
                break;
            case NbdReplyType.OffsetHole:
                if (request.Command != NbdCommand.Read || length != 12)
                {
                    throw new NbdProtocolException($"{Server} sent a hole chunk of {length} bytes for a {request.Command}");
                }

                await _receive.ReadExactAsync(_scratch.AsMemory(0, 12), token).ConfigureAwait(false);
                var holeLength = BinaryPrimitives.ReadUInt32BigEndian(_scratch.AsSpan(8));
                var holeOffset = CheckChunkRange(request, BinaryPrimitives.ReadUInt64BigEndian(_scratch), holeLength);
                Cover(request, holeOffset, (int)holeLength);
                ZeroRange(request, holeOffset, (int)holeLength);
                break;
            case NbdReplyType.None:
                if (length != 0 || (flags & NbdReplyFlags.Done) == 0)
                {
                    throw new NbdProtocolException($"{Server} sent an NBD_REPLY_TYPE_NONE chunk with {length} bytes or without the done flag");
                }

                break;
            default:
                if (length > NbdProtocol.MaxControlPayload)
                {
                    throw new NbdProtocolException($"{Server} sent a chunk of type {(ushort)type} with {length} bytes; at most {NbdProtocol.MaxControlPayload} are accepted");
                }

                await _receive.ReadExactAsync(_scratch.AsMemory(0, (int)length), token).ConfigureAwait(false);
                if (((ushort)type & (ushort)NbdReplyType.ErrorBit) != 0)
                {
                    RecordError(request, type, _scratch.AsSpan(0, (int)length));
                }

                // Unknown non-error chunks carry nothing this client asked for; they are skipped.
                break;
        }

        if ((flags & NbdReplyFlags.Done) != 0)
        {
            if (request.Command == NbdCommand.Read && request.ReplyErrno == 0 && request.BytesCovered != request.Length)
            {
                throw new NbdProtocolException($"{Server} ended a READ of {request.Length} bytes at {request.Offset} after covering {request.BytesCovered} bytes");
            }

            Finish(request);
        }
    }

    /// <summary>A READ's data, <paramref name="offset"/> bytes into the request: into its buffer, or its registered pages (zero copy).</summary>
    private ValueTask ReceivePayloadAsync(NbdRequest request, int offset, int length, CancellationToken token) =>
        request.Registered is { } registered
            ? _receive.ReadIntoRegisteredAsync(registered, offset, length, token)
            : _receive.ReadExactAsync(request.ReadBuffer.Slice(offset, length), token);

    private static void ZeroRange(NbdRequest request, int offset, int length)
    {
        if (request.Registered is not { } registered)
        {
            request.ReadBuffer.Span.Slice(offset, length).Clear();
            return;
        }

        for (var done = 0; done < length; done += ZeroBlock.Memory.Length)
        {
            registered.CopyIn(offset + done, ZeroBlock.Memory.Span[..Math.Min(ZeroBlock.Memory.Length, length - done)]);
        }
    }

    /// <summary>Records a chunk's range of its READ request; an overlap with another chunk of the reply is a protocol error.</summary>
    private void Cover(NbdRequest request, int offset, int length)
    {
        if (!request.TryCover(offset, length))
        {
            throw new NbdProtocolException(
                $"{Server} sent a chunk for [{request.Offset + offset}, +{length}) that overlaps another chunk of the same READ reply");
        }
    }

    /// <summary>Checks that a chunk lies inside its request and returns its offset in the request's buffer.</summary>
    private int CheckChunkRange(NbdRequest request, ulong chunkOffset, uint chunkLength)
    {
        var start = (ulong)request.Offset;
        if (chunkOffset < start || chunkOffset - start + chunkLength > request.Length)
        {
            throw new NbdProtocolException(
                $"{Server} sent a chunk for [{chunkOffset}, +{chunkLength}) outside the READ of {request.Length} bytes at {request.Offset}");
        }

        return (int)(chunkOffset - start);
    }

    private void RecordError(NbdRequest request, NbdReplyType type, ReadOnlySpan<byte> payload)
    {
        if (payload.Length < 4)
        {
            throw new NbdProtocolException($"{Server} sent an error chunk of {payload.Length} bytes");
        }

        var errno = BinaryPrimitives.ReadUInt32BigEndian(payload);
        string? message = null;
        if (type is NbdReplyType.Error or NbdReplyType.ErrorOffset && payload.Length >= 6)
        {
            var messageLength = BinaryPrimitives.ReadUInt16BigEndian(payload[4..]);
            if (6 + messageLength > payload.Length)
            {
                throw new NbdProtocolException($"{Server} sent an error chunk whose message ({messageLength} bytes) exceeds it ({payload.Length} bytes)");
            }

            message = messageLength == 0 ? null : System.Text.Encoding.UTF8.GetString(payload.Slice(6, Math.Min((int)messageLength, 256)));
        }

        if (request.ReplyErrno == 0)
        {
            // An error chunk with value 0 breaks the protocol; EIO is the honest answer to the caller.
            request.ReplyErrno = errno == 0 ? NbdErrno.EIO : (int)Math.Min(errno, int.MaxValue);
            request.ReplyMessage = message;
        }
    }

    private void Finish(NbdRequest request)
    {
        if (request.ReplyErrno == NbdErrno.ESHUTDOWN)
        {
            // The server is going away: the request is sent again once a connection is back.
            throw new IOException($"{Server} is shutting down (ESHUTDOWN)");
        }

        if (!TryRemove(request))
        {
            return;
        }

        if (request.ReplyErrno != 0)
        {
            request.Fail(request.ServerError(Server));
        }
        else
        {
            request.Succeed();
        }
    }

    private Exception Lost(Exception e, string activity) => e switch
    {
        NbdProtocolException or TimeoutException or ObjectDisposedException => e,
        IOException io when io.InnerException is null => io,
        _ => new IOException($"connection to {Server} lost while {activity}: {e.Message}", e),
    };
}
