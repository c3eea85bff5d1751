using System.Buffers;
using System.Collections.Concurrent;
using System.Text;
using Grpc.Core;
using UblkCsi.BlockStore.V1;
using UblkCsi.Engine;
using UblkCsi.Stores.Rpc;
using UblkCsi.Stores.Rpc.Streaming;
using static UblkCsi.Stores.Rpc.Streaming.IoStreamFields;

namespace UblkCsi.BlockStoreServer.Service.Streaming;

/// <summary>
/// One request of a Stream call on the server, and then its response: parsed straight from the
/// transport's buffer (a write's payload lands in a pooled array, the one copy there is), executed, and
/// written back straight into the transport's buffer. A read's payload comes from a pooled array, or,
/// for a volume read through the page cache (<see cref="ReadInResponse"/>), is read straight into the
/// transport's buffer while the response is written. The objects and arrays return to their pools once
/// the response is written, so the server copies each payload once and allocates no message object for it.
/// </summary>
public sealed class StreamIo
{
    private const int MaxPooled = 1024;
    private static readonly ConcurrentQueue<StreamIo> Pool = new();

    private byte[]? _data;
    private int _dataLength;

    // READ answered by reading while its response is written: the volume it reads (see ReadInResponse).
    private IBlockBackend? _readInResponse;

    // The response's encoded size, computed once per batch message for its length prefix.
    private int _encodedSize;

    private StreamIo()
    {
    }

    /// <summary>The method with the pooled codecs, bound in place of the generated one.</summary>
    public static Method<StreamIoBatch, StreamIoBatch> Method { get; } = new(
        MethodType.DuplexStreaming,
        Stores.Rpc.BlockStoreProtocol.Service.FullName,
        MethodName,
        new Marshaller<StreamIoBatch>(static (_, _) => throw new NotSupportedException("the server does not write requests"), ReadBatch),
        new Marshaller<StreamIoBatch>(WriteBatch, static _ => throw new NotSupportedException("the server does not read responses")));

    public ulong Id { get; private set; }

    public IoOp Op { get; private set; }

    public long Offset { get; private set; }

    public long Length { get; private set; }

    public bool Fua { get; private set; }

    public uint Attempt { get; private set; }

    /// <summary>OPEN only.</summary>
    public string VolumeId { get; private set; } = "";

    /// <summary>OPEN only: the writer generation the stream's mutations carry.</summary>
    public ulong WriterGeneration { get; private set; }

    /// <summary>WRITE: the payload; READ, after <see cref="RentData"/>: where the data goes.</summary>
    public Memory<byte> Data => _data is null ? default : _data.AsMemory(0, _dataLength);

    /// <summary>The response's status (0 = OK), message and errno.</summary>
    public StatusCode Code { get; private set; }

    public string? Message { get; private set; }

    public int Errno { get; private set; }

    /// <summary>A pooled buffer of <paramref name="length"/> bytes for a read's data (replacing a write's payload).</summary>
    public Memory<byte> RentData(int length)
    {
        ReturnData();
        _data = ArrayPool<byte>.Shared.Rent(length);
        _dataLength = length;
        return Data;
    }

    /// <summary>
    /// READ of a volume whose reads complete inline (page cache): nothing is read now; the data is read
    /// straight into the transport's buffer while the response is written, one copy less than through a
    /// pooled array. The range must be valid and not empty (the caller checked it). Its status follows its
    /// data on the wire, at a fixed width, so a read that fails then is still answered on its own.
    /// </summary>
    public void ReadInResponse(IBlockBackend backend)
    {
        ReturnData();
        _readInResponse = backend;
        _dataLength = (int)Length;
    }

    /// <summary>Turns the request into an error response (its payload, if any, is dropped).</summary>
    public void SetError(StatusCode code, string message, int errno = 0)
    {
        ReturnData();
        Code = code;
        Message = message;
        Errno = errno;
    }

    /// <summary>Turns a write or mutation into its (empty) OK response.</summary>
    public void DropData() => ReturnData();

    /// <summary>Returns the object and its buffer to the pools; it must not be used afterwards.</summary>
    public void Return()
    {
        ReturnData();
        Id = 0;
        Op = IoOp.Unspecified;
        Offset = Length = 0;
        Fua = false;
        Attempt = 0;
        VolumeId = "";
        WriterGeneration = 0;
        Code = StatusCode.OK;
        Message = null;
        Errno = 0;
        if (Pool.Count < MaxPooled)
        {
            Pool.Enqueue(this);
        }
    }

    private void ReturnData()
    {
        if (_data is not null)
        {
            ArrayPool<byte>.Shared.Return(_data);
            _data = null;
        }

        _readInResponse = null;
        _dataLength = 0;
    }

    private static StreamIo Rent() => Pool.TryDequeue(out var io) ? io : new StreamIo();

    /// <summary>Parses an IoRequestBatch into pooled requests (each entry one <see cref="StreamIo"/>).</summary>
    private static StreamIoBatch ReadBatch(DeserializationContext context)
    {
        var batch = StreamIoBatch.Rent();
        var reader = new SequenceReader<byte>(context.PayloadAsReadOnlySequence());
        try
        {
            while (!reader.End)
            {
                if (!ProtoWire.TryReadTag(ref reader, out var field, out var wireType))
                {
                    throw Malformed();
                }

                if (field != BatchEntries || wireType != ProtoWire.LengthDelimitedType)
                {
                    if (!ProtoWire.TrySkip(ref reader, wireType))
                    {
                        throw Malformed();
                    }

                    continue;
                }

                if (!ProtoWire.TryReadLength(ref reader, out var length))
                {
                    throw Malformed();
                }

                batch.Items.Add(ReadRequest(reader.UnreadSequence.Slice(0, length)));
                reader.Advance(length);
            }
        }
        catch
        {
            batch.ReturnAll();
            throw;
        }

        return batch;
    }

    private static StreamIo ReadRequest(ReadOnlySequence<byte> entry)
    {
        var reader = new SequenceReader<byte>(entry);
        var io = Rent();
        try
        {
            while (!reader.End)
            {
                if (!ProtoWire.TryReadTag(ref reader, out var field, out var wireType) || !io.TryReadField(ref reader, field, wireType))
                {
                    throw Malformed();
                }
            }
        }
        catch
        {
            io.Return();
            throw;
        }

        return io;
    }

    private static RpcException Malformed() => new(new Status(StatusCode.InvalidArgument, "malformed IoRequestBatch"));

    private bool TryReadField(ref SequenceReader<byte> reader, int field, int wireType)
    {
        ulong value;
        switch (field, wireType)
        {
            case (RequestId, ProtoWire.VarintType) when ProtoWire.TryReadVarint(ref reader, out value):
                Id = value;
                return true;
            case (RequestOp, ProtoWire.VarintType) when ProtoWire.TryReadVarint(ref reader, out value):
                Op = (IoOp)(int)value;
                return true;
            case (RequestOffset, ProtoWire.VarintType) when ProtoWire.TryReadVarint(ref reader, out value):
                Offset = (long)value;
                return true;
            case (RequestLength, ProtoWire.VarintType) when ProtoWire.TryReadVarint(ref reader, out value):
                Length = (long)value;
                return true;
            case (RequestFua, ProtoWire.VarintType) when ProtoWire.TryReadVarint(ref reader, out value):
                Fua = value != 0;
                return true;
            case (RequestAttempt, ProtoWire.VarintType) when ProtoWire.TryReadVarint(ref reader, out value):
                Attempt = (uint)value;
                return true;
            case (RequestWriterGeneration, ProtoWire.VarintType) when ProtoWire.TryReadVarint(ref reader, out value):
                WriterGeneration = value;
                return true;
            case (RequestVolumeId, ProtoWire.LengthDelimitedType):
                if (!ProtoWire.TryReadString(ref reader, out var volumeId))
                {
                    return false;
                }

                VolumeId = volumeId;
                return true;
            case (RequestData, ProtoWire.LengthDelimitedType):
                if (!ProtoWire.TryReadLength(ref reader, out var length))
                {
                    return false;
                }

                reader.UnreadSequence.Slice(0, length).CopyTo(RentData(length).Span);
                reader.Advance(length);
                return true;
            case (RequestId or RequestOp or RequestOffset or RequestLength or RequestFua or RequestAttempt or RequestWriterGeneration, _):
                return false;
            default:
                return ProtoWire.TrySkip(ref reader, wireType);
        }
    }

    /// <summary>Bytes of this response's data on the wire.</summary>
    public int ResponseDataLength => Code == StatusCode.OK && Op == IoOp.Read ? _dataLength : 0;

    /// <summary>Writes an IoResponseBatch: each response as a length-delimited entry.</summary>
    private static void WriteBatch(StreamIoBatch batch, SerializationContext context)
    {
        var total = 0;
        foreach (var io in batch.Items)
        {
            io._encodedSize = io.ResponseHeaderSize() + io.ResponseDataLength;
            total += ProtoWire.BytesFieldSize(BatchEntries, io._encodedSize);
        }

        context.SetPayloadLength(total);
        var writer = context.GetBufferWriter();
        foreach (var io in batch.Items)
        {
            var span = writer.GetSpan(16);
            writer.Advance(ProtoWire.WriteBytesHeader(span, BatchEntries, io._encodedSize));
            io.WriteResponse(writer);
        }

        context.Complete();
    }

    private int MessageLength => Message is null ? 0 : Encoding.UTF8.GetByteCount(Message);

    private int ResponseHeaderSize()
    {
        var dataLength = ResponseDataLength;
        if (_readInResponse is not null)
        {
            return ProtoWire.VarintFieldSize(ResponseId, Id)
                + ProtoWire.BytesFieldSize(ResponseData, dataLength) - dataLength
                + ProtoWire.FixedWidthVarintFieldSize(ResponseCode)
                + ProtoWire.FixedWidthVarintFieldSize(ResponseErrno);
        }

        return ProtoWire.VarintFieldSize(ResponseId, Id)
            + ProtoWire.VarintFieldSize(ResponseCode, (ulong)Code)
            + ProtoWire.VarintFieldSize(ResponseErrno, (ulong)Errno)
            + ProtoWire.BytesFieldSize(ResponseMessage, MessageLength)
            + (dataLength == 0 ? 0 : ProtoWire.BytesFieldSize(ResponseData, dataLength) - dataLength);
    }

    private void WriteResponse(IBufferWriter<byte> writer)
    {
        if (_readInResponse is { } backend)
        {
            WriteReadInResponse(writer, backend);
            return;
        }

        var dataLength = ResponseDataLength;
        var messageLength = MessageLength;
        var span = writer.GetSpan(ResponseHeaderSize());
        var n = ProtoWire.WriteVarintField(span, ResponseId, Id);
        n += ProtoWire.WriteVarintField(span[n..], ResponseCode, (ulong)Code);
        if (messageLength > 0)
        {
            n += ProtoWire.WriteBytesHeader(span[n..], ResponseMessage, messageLength);
            n += Encoding.UTF8.GetBytes(Message, span[n..]);
        }

        n += ProtoWire.WriteVarintField(span[n..], ResponseErrno, (ulong)Errno);
        if (dataLength > 0)
        {
            n += ProtoWire.WriteBytesHeader(span[n..], ResponseData, dataLength);
        }

        writer.Advance(n);
        if (dataLength > 0)
        {
            ProtoWire.WriteRaw(writer, _data.AsSpan(0, dataLength));
        }
    }

    /// <summary>Writes a <see cref="ReadInResponse"/> response: id, the data read into the transport's buffer, then code and errno.</summary>
    private void WriteReadInResponse(IBufferWriter<byte> writer, IBlockBackend backend)
    {
        var span = writer.GetSpan(32);
        var n = ProtoWire.WriteVarintField(span, ResponseId, Id);
        n += ProtoWire.WriteBytesHeader(span[n..], ResponseData, _dataLength);
        writer.Advance(n);

        // One contiguous piece is what a pipe hands out for this size hint; anything else reads through a pooled array.
        var buffer = writer.GetMemory(_dataLength);
        StatusCode code;
        int errno;
        if (buffer.Length >= _dataLength)
        {
            (code, errno) = Read(backend, buffer[.._dataLength]);
            writer.Advance(_dataLength);
        }
        else
        {
            (code, errno) = ReadThroughPooledArray(backend, writer);
        }

        span = writer.GetSpan(2 * ProtoWire.FixedWidthVarintFieldSize(ResponseCode));
        n = ProtoWire.WriteFixedWidthVarintField(span, ResponseCode, (uint)code);
        n += ProtoWire.WriteFixedWidthVarintField(span[n..], ResponseErrno, (uint)errno);
        writer.Advance(n);
    }

    private (StatusCode Code, int Errno) ReadThroughPooledArray(IBlockBackend backend, IBufferWriter<byte> writer)
    {
        var array = ArrayPool<byte>.Shared.Rent(_dataLength);
        try
        {
            var result = Read(backend, array.AsMemory(0, _dataLength));
            ProtoWire.WriteRaw(writer, array.AsSpan(0, _dataLength));
            return result;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(array);
        }
    }

    /// <summary>Reads this request's range into <paramref name="buffer"/>; a failure zeroes it and is returned as the response's status.</summary>
    private (StatusCode Code, int Errno) Read(IBlockBackend backend, Memory<byte> buffer)
    {
        try
        {
            var read = backend.ReadAsync(Offset, buffer, CancellationToken.None);
            if (read.IsCompletedSuccessfully)
            {
                return (StatusCode.OK, 0);
            }

            // Page-cache reads complete inline; should one not, the writer waits for it rather than answer wrong data.
            read.AsTask().GetAwaiter().GetResult();
            return (StatusCode.OK, 0);
        }
        catch (BlockBackendException e)
        {
            buffer.Span.Clear();
            return (RpcErrorCodec.StatusFor(e), e.Errno);
        }
    }
}

/// <summary>The requests of one stream message, or the responses of one; pooled.</summary>
public sealed class StreamIoBatch
{
    private static readonly ConcurrentQueue<StreamIoBatch> Pool = new();

    private StreamIoBatch()
    {
    }

    public List<StreamIo> Items { get; } = new(IoStreamFields.MaxBatchEntries);

    /// <summary>Payload bytes of the responses so far.</summary>
    public int DataBytes { get; private set; }

    public static StreamIoBatch Rent() => Pool.TryDequeue(out var batch) ? batch : new StreamIoBatch();

    public void AddResponse(StreamIo io)
    {
        Items.Add(io);
        DataBytes += io.ResponseDataLength;
    }

    /// <summary>Returns the batch (not its items, which live on) to the pool.</summary>
    public void Return()
    {
        Items.Clear();
        DataBytes = 0;
        if (Pool.Count < 256)
        {
            Pool.Enqueue(this);
        }
    }

    /// <summary>Returns the items and the batch to their pools.</summary>
    public void ReturnAll()
    {
        foreach (var io in Items)
        {
            io.Return();
        }

        Return();
    }
}
