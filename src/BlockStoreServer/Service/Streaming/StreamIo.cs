using System.Buffers;
using System.Collections.Concurrent;
using System.Text;
using Grpc.Core;
using UblkCsi.BlockStore.V1;
using UblkCsi.Stores.Rpc.Streaming;
using static UblkCsi.Stores.Rpc.Streaming.IoStreamFields;

namespace UblkCsi.BlockStoreServer.Service.Streaming;

/// <summary>
/// One request of a Stream call on the server, and then its response: parsed straight from the
/// transport's buffer (a write's payload lands in a pooled array, the one copy there is), executed, and
/// written back straight into the transport's buffer (a read's payload comes from a pooled array). The
/// objects and arrays return to their pools once the response is written, so the server copies each
/// payload once and allocates no message object for it.
/// </summary>
public sealed class StreamIo
{
    private const int MaxPooled = 1024;
    private static readonly ConcurrentQueue<StreamIo> Pool = new();

    private byte[]? _data;
    private int _dataLength;

    private StreamIo()
    {
    }

    /// <summary>The method with the pooled codecs, replacing the generated one when the service is bound.</summary>
    public static Method<StreamIo, StreamIo> Method { get; } = new(
        MethodType.DuplexStreaming,
        Stores.Rpc.BlockStoreProtocol.Service.FullName,
        MethodName,
        new Marshaller<StreamIo>(static (_, _) => throw new NotSupportedException("the server does not write requests"), ReadRequest),
        new Marshaller<StreamIo>(WriteResponse, static _ => throw new NotSupportedException("the server does not read responses")));

    public ulong Id { get; private set; }

    public IoOp Op { get; private set; }

    public long Offset { get; private set; }

    public long Length { get; private set; }

    public bool Fua { get; private set; }

    public uint Attempt { get; private set; }

    /// <summary>OPEN only.</summary>
    public string VolumeId { get; private set; } = "";

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
            _dataLength = 0;
        }
    }

    private static StreamIo Rent() => Pool.TryDequeue(out var io) ? io : new StreamIo();

    private static StreamIo ReadRequest(DeserializationContext context)
    {
        var reader = new SequenceReader<byte>(context.PayloadAsReadOnlySequence());
        var io = Rent();
        try
        {
            while (!reader.End)
            {
                if (!ProtoWire.TryReadTag(ref reader, out var field, out var wireType) || !io.TryReadField(ref reader, field, wireType))
                {
                    throw new RpcException(new Status(StatusCode.InvalidArgument, "malformed IoRequest"));
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
            case (RequestId or RequestOp or RequestOffset or RequestLength or RequestFua or RequestAttempt, _):
                return false;
            default:
                return ProtoWire.TrySkip(ref reader, wireType);
        }
    }

    private static void WriteResponse(StreamIo io, SerializationContext context)
    {
        var dataLength = io.Code == StatusCode.OK && io.Op == IoOp.Read ? io._dataLength : 0;
        var messageLength = io.Message is null ? 0 : Encoding.UTF8.GetByteCount(io.Message);
        var headerSize =
            ProtoWire.VarintFieldSize(ResponseId, io.Id)
            + ProtoWire.VarintFieldSize(ResponseCode, (ulong)io.Code)
            + ProtoWire.VarintFieldSize(ResponseErrno, (ulong)io.Errno)
            + ProtoWire.BytesFieldSize(ResponseMessage, messageLength)
            + (dataLength == 0 ? 0 : ProtoWire.BytesFieldSize(ResponseData, dataLength) - dataLength);
        context.SetPayloadLength(headerSize + dataLength);
        var writer = context.GetBufferWriter();
        var span = writer.GetSpan(headerSize);
        var n = ProtoWire.WriteVarintField(span, ResponseId, io.Id);
        n += ProtoWire.WriteVarintField(span[n..], ResponseCode, (ulong)io.Code);
        if (messageLength > 0)
        {
            n += ProtoWire.WriteBytesHeader(span[n..], ResponseMessage, messageLength);
            n += Encoding.UTF8.GetBytes(io.Message, span[n..]);
        }

        n += ProtoWire.WriteVarintField(span[n..], ResponseErrno, (ulong)io.Errno);
        if (dataLength > 0)
        {
            n += ProtoWire.WriteBytesHeader(span[n..], ResponseData, dataLength);
        }

        writer.Advance(n);
        if (dataLength > 0)
        {
            ProtoWire.WriteRaw(writer, io._data.AsSpan(0, dataLength));
        }

        context.Complete();
    }
}
