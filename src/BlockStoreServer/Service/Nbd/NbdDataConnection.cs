using System.Buffers;
using System.Buffers.Binary;
using System.Net.Sockets;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using UblkCsi.Engine;
using UblkCsi.Stores.Nbd;

namespace UblkCsi.BlockStoreServer.Service.Nbd;

/// <summary>
/// The transmission phase of one NBD connection, on a thread of its own: requests are read in as
/// many as have arrived, each is executed in order as soon as it is whole, and the replies collect in
/// one buffer that goes out in one send whenever the connection would otherwise wait for the client.
/// A read's data is read straight into that buffer behind its reply header, and a write's payload is
/// written straight from the receive buffer, so the server copies each payload once (as nbdkit's
/// file plugin does) and allocates nothing per request. The two buffers are modest (<see cref="ReceiveBufferBytes"/>,
/// <see cref="ReplyBufferBytes"/>): a request or reply that does not fit borrows a shared pooled array for
/// its payload, so memory grows with the large requests in flight, not with the connections (a server
/// holds two per volume).
/// </summary>
/// <remarks>
/// Executing in order on one thread is the fast path for the volumes this server serves (page-cache
/// file I/O completes in microseconds); the client's parallelism is its connections, one per engine
/// queue. Mutations pass the volume's fence with the writer generation the connection was opened for.
/// A connection that a reconnect replaced (<see cref="Supersede"/>) executes nothing more, so a request
/// the client sends again on its new connection cannot be overtaken by the stale copy.
/// </remarks>
internal sealed partial class NbdDataConnection
{
    /// <summary>
    /// The receive buffer holds a whole 512 KiB write (the largest request of a ublk device at its default
    /// limit) with room for the requests around it, so the engine's writes are never copied twice; a
    /// larger write (up to the export's 1 MiB) is gathered in a pooled array.
    /// </summary>
    private const int ReceiveBufferBytes = (512 + 64) * 1024;

    /// <summary>The reply buffer: many small replies; a larger read is read into a pooled array and sent on its own, without an extra copy.</summary>
    private const int ReplyBufferBytes = 256 * 1024;

    private readonly Socket _socket;
    private readonly Stream _stream;
    private readonly ManualResetEventSlim _ended = new();
    private readonly OpenVolume _volume;
    private readonly ulong _writerGeneration;
    private readonly bool _readOnly;
    private readonly int _maxPayload;
    private readonly ILogger _logger;
    private readonly byte[] _in;
    private readonly byte[] _out;
    private int _inStart;
    private int _inEnd;
    private int _outLength;
    private volatile bool _superseded;

    public NbdDataConnection(Socket socket, Stream stream, OpenVolume volume, ulong writerGeneration, bool readOnly, int maxPayload, ILogger logger)
    {
        _socket = socket;
        _stream = stream;
        _volume = volume;
        _writerGeneration = writerGeneration;
        _readOnly = readOnly;
        _maxPayload = maxPayload;
        _logger = logger;
        _in = GC.AllocateUninitializedArray<byte>(ReceiveBufferBytes);
        _out = GC.AllocateUninitializedArray<byte>(ReplyBufferBytes);
    }

    /// <summary>Serves requests until the client disconnects, the connection fails or it is superseded; never throws for those.</summary>
    public void Run()
    {
        try
        {
            while (!_superseded && ServeNext())
            {
            }

            if (!_superseded)
            {
                Flush();
            }
        }
        catch (Exception e) when (e is SocketException or IOException or ObjectDisposedException or NbdDataProtocolException)
        {
            if (e is NbdDataProtocolException)
            {
                ProtocolViolation(_logger, _volume.VolumeId, e.Message);
            }
        }
    }

    /// <summary>Stops the connection: no request is executed after the one running now, and the socket is shut down.</summary>
    public void Supersede()
    {
        _superseded = true;
        try
        {
            _socket.Shutdown(SocketShutdown.Both);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            // Already closed.
        }
    }

    /// <summary>Marks the connection's thread as done with it (it runs no request any more).</summary>
    public void Finish() => _ended.Set();

    /// <summary>Waits until the connection's thread is done with it; false after <paramref name="timeout"/>.</summary>
    public bool WaitFinished(TimeSpan timeout) => _ended.Wait(timeout);

    /// <summary>Serves one request, reading more first when none is whole; false after a disconnect.</summary>
    private bool ServeNext()
    {
        if (!Buffered(NbdProtocol.RequestHeaderSize))
        {
            return ReceiveMore(NbdProtocol.RequestHeaderSize);
        }

        var header = _in.AsSpan(_inStart, NbdProtocol.RequestHeaderSize);
        if (BinaryPrimitives.ReadUInt32BigEndian(header) != NbdProtocol.RequestMagic)
        {
            throw new NbdDataProtocolException($"a request did not start with the request magic (got 0x{BinaryPrimitives.ReadUInt32BigEndian(header):x8})");
        }

        var flags = (NbdCommandFlags)BinaryPrimitives.ReadUInt16BigEndian(header[4..]);
        var command = (NbdCommand)BinaryPrimitives.ReadUInt16BigEndian(header[6..]);
        var handle = BinaryPrimitives.ReadUInt64BigEndian(header[8..]);
        var offset = (long)BinaryPrimitives.ReadUInt64BigEndian(header[16..]);
        var length = BinaryPrimitives.ReadUInt32BigEndian(header[24..]);
        if (command == NbdCommand.Write)
        {
            if (length > _maxPayload)
            {
                throw new NbdDataProtocolException($"a write of {length} bytes is larger than the {_maxPayload} the export advertised");
            }

            if (NbdProtocol.RequestHeaderSize + (int)length > _in.Length)
            {
                _inStart += NbdProtocol.RequestHeaderSize;
                WriteLarge(handle, offset, (int)length, flags);
                return true;
            }

            if (!Buffered(NbdProtocol.RequestHeaderSize + (int)length))
            {
                return ReceiveMore(NbdProtocol.RequestHeaderSize + (int)length);
            }
        }

        _inStart += NbdProtocol.RequestHeaderSize;
        switch (command)
        {
            case NbdCommand.Read:
                Read(handle, offset, length);
                break;
            case NbdCommand.Write:
                var payload = _in.AsMemory(_inStart, (int)length);
                _inStart += (int)length;
                Reply(handle, Write(offset, payload, flags));
                break;
            case NbdCommand.Flush:
                // A superseded writer's flush is refused like its writes (it changes no data, so it needs no fence slot).
                Reply(handle, !_readOnly && !_volume.Fence.Admits(_writerGeneration) ? NbdErrno.EPERM
                    : Execute(static (connection, _, _) => connection._volume.Backend.FlushAsync(CancellationToken.None), offset, length));
                break;
            case NbdCommand.Trim:
                Reply(handle, Mutate(offset, length, BlockWriteFlags.None, default, static (backend, offset, length, _, _) =>
                    backend.DiscardAsync(offset, length, CancellationToken.None)));
                break;
            case NbdCommand.WriteZeroes when (flags & NbdCommandFlags.NoHole) != 0:
                Reply(handle, Mutate(offset, length, BlockWriteFlags.None, default, static (backend, offset, length, _, _) =>
                    backend.WriteZeroesAsync(offset, length, CancellationToken.None)));
                break;
            case NbdCommand.WriteZeroes:
                // A hole may be punched: the store's discard, whose ranges read back as zeros.
                Reply(handle, Mutate(offset, length, BlockWriteFlags.None, default, static (backend, offset, length, _, _) =>
                    backend.DiscardAsync(offset, length, CancellationToken.None)));
                break;
            case NbdCommand.Disconnect:
                return false;
            default:
                Reply(handle, NbdErrno.EINVAL);
                break;
        }

        return true;
    }

    private void Read(ulong handle, long offset, uint length)
    {
        if (length > _maxPayload)
        {
            Reply(handle, NbdErrno.EINVAL);
            return;
        }

        var whole = NbdProtocol.SimpleReplySize + (int)length;
        if (whole > _out.Length)
        {
            ReadLarge(handle, offset, (int)length);
            return;
        }

        Reserve(whole);
        var error = ReadInto(_out.AsMemory(_outLength + NbdProtocol.SimpleReplySize, (int)length), offset);
        WriteReplyHeader(_out.AsSpan(_outLength), handle, error);
        // An error reply carries no data.
        _outLength += NbdProtocol.SimpleReplySize + (error == 0 ? (int)length : 0);
    }

    /// <summary>A read larger than the reply buffer: read into a pooled array behind its header and sent on its own, after what was collected.</summary>
    private void ReadLarge(ulong handle, long offset, int length)
    {
        Flush();
        var reply = ArrayPool<byte>.Shared.Rent(NbdProtocol.SimpleReplySize + length);
        try
        {
            var error = ReadInto(reply.AsMemory(NbdProtocol.SimpleReplySize, length), offset);
            WriteReplyHeader(reply, handle, error);
            _stream.Write(reply, 0, NbdProtocol.SimpleReplySize + (error == 0 ? length : 0));
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(reply);
        }
    }

    /// <summary>A write larger than the receive buffer: its payload is gathered in a pooled array (what already arrived, then the rest straight from the socket).</summary>
    private void WriteLarge(ulong handle, long offset, int length, NbdCommandFlags flags)
    {
        var payload = ArrayPool<byte>.Shared.Rent(length);
        try
        {
            var buffered = Math.Min(_inEnd - _inStart, length);
            Buffer.BlockCopy(_in, _inStart, payload, 0, buffered);
            _inStart += buffered;
            if (buffered < length)
            {
                // The client may be waiting for earlier replies before it sends the rest.
                Flush();
                try
                {
                    _stream.ReadExactly(payload, buffered, length - buffered);
                }
                catch (EndOfStreamException)
                {
                    throw new NbdDataProtocolException($"the client closed the connection inside a write of {length} bytes");
                }
            }

            Reply(handle, Write(offset, payload.AsMemory(0, length), flags));
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(payload);
        }
    }

    private int ReadInto(Memory<byte> data, long offset) =>
        Execute(static (connection, offset, data) => connection._volume.Backend.ReadAsync(offset, data, CancellationToken.None), offset, data);

    private int Write(long offset, ReadOnlyMemory<byte> payload, NbdCommandFlags flags) =>
        Mutate(offset, (uint)payload.Length, (flags & NbdCommandFlags.Fua) != 0 ? BlockWriteFlags.Fua : BlockWriteFlags.None, payload,
            static (backend, offset, _, writeFlags, data) => backend.WriteAsync(offset, data, writeFlags, CancellationToken.None));

    /// <summary>A mutation inside the volume's fence; the NBD error to answer (0 = done).</summary>
    private int Mutate(long offset, uint length, BlockWriteFlags flags, ReadOnlyMemory<byte> data, Func<IBlockBackend, long, long, BlockWriteFlags, ReadOnlyMemory<byte>, ValueTask> mutation)
    {
        if (_readOnly)
        {
            return NbdErrno.EPERM;
        }

        if (!_volume.Fence.TryEnter(_writerGeneration, out var epoch))
        {
            // Another client opened the volume for writing: this connection's writer was superseded.
            return NbdErrno.EPERM;
        }

        try
        {
            return _volume.IsDeleted ? NbdErrno.EIO : Complete(mutation(_volume.Backend, offset, length, flags, data));
        }
        catch (Exception e)
        {
            // Thrown before any I/O (e.g. a range past the volume's end).
            return ErrorFor(e);
        }
        finally
        {
            _volume.Fence.Exit(epoch);
        }
    }

    private int Execute<TArgument>(Func<NbdDataConnection, long, TArgument, ValueTask> operation, long offset, TArgument argument)
    {
        if (_volume.IsDeleted)
        {
            return NbdErrno.EIO;
        }

        try
        {
            return Complete(operation(this, offset, argument));
        }
        catch (Exception e)
        {
            return ErrorFor(e);
        }
    }

    /// <summary>Waits for <paramref name="pending"/> (page-cache I/O has completed already); the NBD error, 0 for success.</summary>
    private int Complete(ValueTask pending)
    {
        try
        {
            if (pending.IsCompletedSuccessfully)
            {
                return 0;
            }

            pending.AsTask().GetAwaiter().GetResult();
            return 0;
        }
        catch (Exception e)
        {
            return ErrorFor(e);
        }
    }

    private int ErrorFor(Exception e)
    {
        switch (e)
        {
            case BlockBackendException backend:
                return backend.Errno switch
                {
                    BlockBackendException.ENOSPC => NbdErrno.ENOSPC,
                    BlockBackendException.EINVAL => NbdErrno.EINVAL,
                    BlockBackendException.EOPNOTSUPP => NbdErrno.ENOTSUP,
                    BlockBackendException.EROFS => NbdErrno.EPERM,
                    _ => NbdErrno.EIO,
                };
            case ArgumentException:
                // A range outside the volume: the client's mistake, answered, not logged.
                return NbdErrno.EINVAL;
            case RpcException:
                return NbdErrno.EIO;
            default:
                UnexpectedFailure(_logger, _volume.VolumeId, e);
                return NbdErrno.EIO;
        }
    }

    private void Reply(ulong handle, int error)
    {
        Reserve(NbdProtocol.SimpleReplySize);
        WriteReplyHeader(_out.AsSpan(_outLength), handle, error);
        _outLength += NbdProtocol.SimpleReplySize;
    }

    private static void WriteReplyHeader(Span<byte> reply, ulong handle, int error)
    {
        BinaryPrimitives.WriteUInt32BigEndian(reply, NbdProtocol.SimpleReplyMagic);
        BinaryPrimitives.WriteUInt32BigEndian(reply[4..], (uint)error);
        BinaryPrimitives.WriteUInt64BigEndian(reply[8..], handle);
    }

    /// <summary>Room for <paramref name="bytes"/> more in the reply buffer, sending what it holds when needed.</summary>
    private void Reserve(int bytes)
    {
        if (_outLength + bytes > _out.Length)
        {
            Flush();
        }
    }

    private void Flush()
    {
        if (_outLength == 0)
        {
            return;
        }

        _stream.Write(_out, 0, _outLength);
        _outLength = 0;
    }

    private bool Buffered(int bytes) => _inEnd - _inStart >= bytes;

    /// <summary>
    /// Waits for at least <paramref name="needed"/> bytes of the current request: sends the replies
    /// collected so far first (the client may be waiting for them), then reads whatever has arrived.
    /// False when the client closed the connection.
    /// </summary>
    private bool ReceiveMore(int needed)
    {
        Flush();
        if (_inStart == _inEnd)
        {
            _inStart = _inEnd = 0;
        }
        else if (_inStart > 0 && _inStart + needed > _in.Length)
        {
            Buffer.BlockCopy(_in, _inStart, _in, 0, _inEnd - _inStart);
            _inEnd -= _inStart;
            _inStart = 0;
        }

        var received = _stream.Read(_in, _inEnd, _in.Length - _inEnd);
        if (received == 0)
        {
            if (_inEnd > _inStart)
            {
                throw new NbdDataProtocolException($"the client closed the connection inside a request ({_inEnd - _inStart} bytes of it arrived)");
            }

            return false;
        }

        _inEnd += received;
        return true;
    }

    [LoggerMessage(EventId = 420, Level = LogLevel.Warning, Message = "volume {VolumeId}: NBD connection closed: {Reason}")]
    private static partial void ProtocolViolation(ILogger logger, string volumeId, string reason);

    [LoggerMessage(EventId = 421, Level = LogLevel.Error, Message = "volume {VolumeId}: NBD request failed unexpectedly")]
    private static partial void UnexpectedFailure(ILogger logger, string volumeId, Exception exception);
}

/// <summary>The client broke the NBD protocol; the connection is closed.</summary>
internal sealed class NbdDataProtocolException(string message) : Exception(message);
