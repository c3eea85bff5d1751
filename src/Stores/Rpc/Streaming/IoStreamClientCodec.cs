using System.Buffers;
using Grpc.Core;
using static UblkCsi.Stores.Rpc.Streaming.IoStreamFields;

namespace UblkCsi.Stores.Rpc.Streaming;

/// <summary>
/// The client's side of the Stream rpc's wire: requests are written from an <see cref="IoOperation"/>
/// straight into the transport's buffer (a write's payload is copied once, from the engine's buffer into
/// the HTTP/2 frame), and a response is matched to its request by id while it is parsed, so a read's
/// payload is copied once, from the transport's buffer into the engine's buffer.
/// </summary>
internal static class IoStreamClientCodec
{
    /// <summary>
    /// The Stream method with these codecs; <paramref name="match"/> takes a response id's request out of
    /// the in-flight table, and <paramref name="answered"/> (reused) receives the requests a message answered.
    /// </summary>
    public static Method<IoRequestBatch, IoResponseBatch> CreateMethod(string serviceName, Func<ulong, IoOperation?> match, IoResponseBatch answered) => new(
        MethodType.DuplexStreaming,
        serviceName,
        MethodName,
        new Marshaller<IoRequestBatch>(WriteBatch, static _ => throw new NotSupportedException("the client does not read requests")),
        new Marshaller<IoResponseBatch>(static (_, _) => throw new NotSupportedException("the client does not write responses"), context => ReadBatch(context, match, answered)));

    /// <summary>Writes an IoRequestBatch: each request as a length-delimited entry.</summary>
    public static void WriteBatch(IoRequestBatch batch, SerializationContext context)
    {
        var total = 0;
        for (var i = 0; i < batch.Count; i++)
        {
            var size = RequestSize(batch.Operations[i]);
            batch.Sizes[i] = size;
            total += ProtoWire.BytesFieldSize(BatchEntries, size);
        }

        context.SetPayloadLength(total);
        var writer = context.GetBufferWriter();
        for (var i = 0; i < batch.Count; i++)
        {
            var span = writer.GetSpan(16);
            writer.Advance(ProtoWire.WriteBytesHeader(span, BatchEntries, batch.Sizes[i]));
            WriteRequest(batch.Operations[i], writer);
        }

        context.Complete();
    }

    private static int DataLength(IoOperation op) => op.Op == BlockStore.V1.IoOp.Write ? op.WriteData.Length : 0;

    private static int HeaderSize(IoOperation op)
    {
        var dataLength = DataLength(op);
        return ProtoWire.VarintFieldSize(RequestId, op.Id)
            + ProtoWire.VarintFieldSize(RequestOp, (ulong)op.Op)
            + ProtoWire.VarintFieldSize(RequestOffset, (ulong)op.Offset)
            + ProtoWire.VarintFieldSize(RequestLength, op.Op == BlockStore.V1.IoOp.Write ? 0 : (ulong)op.Length)
            + ProtoWire.VarintFieldSize(RequestFua, op.Fua ? 1UL : 0)
            + ProtoWire.VarintFieldSize(RequestAttempt, op.Attempt)
            + ProtoWire.BytesFieldSize(RequestVolumeId, op.VolumeIdUtf8.Length)
            + ProtoWire.VarintFieldSize(RequestWriterGeneration, op.WriterGeneration)
            + (dataLength == 0 ? 0 : ProtoWire.BytesFieldSize(RequestData, dataLength) - dataLength);
    }

    private static int RequestSize(IoOperation op) => HeaderSize(op) + DataLength(op);

    private static void WriteRequest(IoOperation op, IBufferWriter<byte> writer)
    {
        var dataLength = DataLength(op);
        var span = writer.GetSpan(HeaderSize(op));
        var n = ProtoWire.WriteVarintField(span, RequestId, op.Id);
        n += ProtoWire.WriteVarintField(span[n..], RequestOp, (ulong)op.Op);
        n += ProtoWire.WriteVarintField(span[n..], RequestOffset, (ulong)op.Offset);
        n += ProtoWire.WriteVarintField(span[n..], RequestLength, op.Op == BlockStore.V1.IoOp.Write ? 0 : (ulong)op.Length);
        n += ProtoWire.WriteVarintField(span[n..], RequestFua, op.Fua ? 1UL : 0);
        n += ProtoWire.WriteVarintField(span[n..], RequestAttempt, op.Attempt);
        if (!op.VolumeIdUtf8.IsEmpty)
        {
            n += ProtoWire.WriteBytesHeader(span[n..], RequestVolumeId, op.VolumeIdUtf8.Length);
            op.VolumeIdUtf8.Span.CopyTo(span[n..]);
            n += op.VolumeIdUtf8.Length;
        }

        n += ProtoWire.WriteVarintField(span[n..], RequestWriterGeneration, op.WriterGeneration);

        if (dataLength > 0)
        {
            n += ProtoWire.WriteBytesHeader(span[n..], RequestData, dataLength);
        }

        writer.Advance(n);
        if (dataLength > 0)
        {
            ProtoWire.WriteRaw(writer, op.WriteData.Span);
        }
    }

    /// <summary>Parses an IoResponseBatch, recording each response in its request (see <see cref="ReadResponse"/>).</summary>
    public static IoResponseBatch ReadBatch(DeserializationContext context, Func<ulong, IoOperation?> match, IoResponseBatch answered)
    {
        answered.Answered.Clear();
        var reader = new SequenceReader<byte>(context.PayloadAsReadOnlySequence());
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

            if (!TryReadSlice(ref reader, out var entry))
            {
                throw Malformed();
            }

            var op = ReadResponse(entry, match);
            if (!ReferenceEquals(op, IoOperation.Unmatched))
            {
                answered.Answered.Add(op);
            }
        }

        return answered;
    }

    /// <summary>
    /// Parses a response, takes its request out of the in-flight table and records the outcome in it;
    /// a read's data goes straight into the request's buffer. A response for no known request yields
    /// <see cref="IoOperation.Unmatched"/>.
    /// </summary>
    public static IoOperation ReadResponse(ReadOnlySequence<byte> payload, Func<ulong, IoOperation?> match)
    {
        var reader = new SequenceReader<byte>(payload);
        ulong id = 0, code = 0, errno = 0;
        var data = ReadOnlySequence<byte>.Empty;
        string? message = null;
        while (!reader.End)
        {
            if (!ProtoWire.TryReadTag(ref reader, out var field, out var wireType))
            {
                throw Malformed();
            }

            var ok = (field, wireType) switch
            {
                (ResponseId, ProtoWire.VarintType) => ProtoWire.TryReadVarint(ref reader, out id),
                (ResponseCode, ProtoWire.VarintType) => ProtoWire.TryReadVarint(ref reader, out code),
                (ResponseErrno, ProtoWire.VarintType) => ProtoWire.TryReadVarint(ref reader, out errno),
                (ResponseData, ProtoWire.LengthDelimitedType) => TryReadSlice(ref reader, out data),
                (ResponseMessage, ProtoWire.LengthDelimitedType) => ProtoWire.TryReadString(ref reader, out message),
                _ => ProtoWire.TrySkip(ref reader, wireType),
            };
            if (!ok)
            {
                throw Malformed();
            }
        }

        var op = match(id);
        if (op is null)
        {
            return IoOperation.Unmatched;
        }

        op.Code = (int)code;
        op.Errno = (int)errno;
        op.Message = message;
        if (code == 0 && op.Op == BlockStore.V1.IoOp.Read)
        {
            if (data.Length != op.ReadBuffer.Length)
            {
                op.Code = (int)StatusCode.Internal;
                op.Errno = Engine.BlockBackendException.EIO;
                op.Message = $"the server returned {data.Length} bytes for a read of {op.ReadBuffer.Length} at {op.Offset}";
            }
            else
            {
                data.CopyTo(op.ReadBuffer.Span);
            }
        }

        return op;
    }

    private static bool TryReadSlice(ref SequenceReader<byte> reader, out ReadOnlySequence<byte> slice)
    {
        slice = default;
        if (!ProtoWire.TryReadLength(ref reader, out var length))
        {
            return false;
        }

        slice = reader.UnreadSequence.Slice(0, length);
        reader.Advance(length);
        return true;
    }

    private static RpcException Malformed() =>
        new(new Status(StatusCode.Internal, "the block-store server sent a malformed IoResponse"));
}
