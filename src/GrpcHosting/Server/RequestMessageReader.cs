using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using Google.Protobuf;
using UblkCsi.GrpcHosting.Wire;

namespace UblkCsi.GrpcHosting.Server;

/// <summary>
/// Reads the single length-prefixed message of a unary request from the request body and checks
/// that nothing follows it. Wire violations become <see cref="RpcException"/>s with the status the
/// client should see; the body is parsed in place from the pipe's buffers.
/// </summary>
internal static class RequestMessageReader
{
    public static async ValueTask<T> ReadAsync<T>(
        PipeReader body, MessageParser<T> parser, bool gzip, int maxBytes, CancellationToken cancellationToken)
        where T : IMessage<T>
    {
        var result = await ReadAtLeastAsync(body, GrpcProtocol.FrameHeaderSize, cancellationToken);
        var buffer = result.Buffer;
        if (buffer.Length < GrpcProtocol.FrameHeaderSize)
        {
            body.AdvanceTo(buffer.End);
            throw buffer.IsEmpty
                ? new RpcException(StatusCode.Internal, "request carried no message; a unary call needs exactly one")
                : new RpcException(StatusCode.Internal, "request ended inside a message header");
        }

        var (compressed, length) = ReadHeader(buffer);
        if (compressed && !gzip)
        {
            body.AdvanceTo(buffer.Start);
            throw new RpcException(StatusCode.Unimplemented, "message is marked compressed but the request names no supported grpc-encoding");
        }

        if (length > maxBytes)
        {
            body.AdvanceTo(buffer.Start);
            throw new RpcException(StatusCode.ResourceExhausted, $"received message larger than max ({length} vs. {maxBytes})");
        }

        var frameLength = GrpcProtocol.FrameHeaderSize + length;
        if (buffer.Length < frameLength)
        {
            body.AdvanceTo(buffer.Start, buffer.End);
            result = await ReadAtLeastAsync(body, frameLength, cancellationToken);
            buffer = result.Buffer;
            if (buffer.Length < frameLength)
            {
                body.AdvanceTo(buffer.End);
                throw new RpcException(StatusCode.Internal, $"request ended inside a message: {buffer.Length - GrpcProtocol.FrameHeaderSize} of {length} bytes arrived");
            }
        }

        T message;
        try
        {
            message = Parse(buffer.Slice(GrpcProtocol.FrameHeaderSize, length), parser, compressed, maxBytes);
        }
        finally
        {
            body.AdvanceTo(buffer.GetPosition(frameLength));
        }

        // A unary request ends after its message; anything more is a protocol violation.
        result = await body.ReadAsync(cancellationToken);
        var trailing = result.Buffer.Length;
        body.AdvanceTo(result.Buffer.End);
        if (trailing > 0)
        {
            throw new RpcException(StatusCode.Internal, "request carried more than one message; a unary call takes exactly one");
        }

        return message;
    }

    private static async ValueTask<ReadResult> ReadAtLeastAsync(PipeReader body, int minimum, CancellationToken cancellationToken)
    {
        var result = await body.ReadAtLeastAsync(minimum, cancellationToken);
        if (result.IsCanceled)
        {
            throw new OperationCanceledException(cancellationToken);
        }

        return result;
    }

    private static (bool Compressed, int Length) ReadHeader(ReadOnlySequence<byte> buffer)
    {
        Span<byte> header = stackalloc byte[GrpcProtocol.FrameHeaderSize];
        buffer.Slice(0, GrpcProtocol.FrameHeaderSize).CopyTo(header);
        if (header[0] > 1)
        {
            throw new RpcException(StatusCode.Internal, $"invalid compressed flag {header[0]} in message header (must be 0 or 1)");
        }

        var length = BinaryPrimitives.ReadUInt32BigEndian(header[1..]);
        return (header[0] == 1, length > int.MaxValue - GrpcProtocol.FrameHeaderSize ? int.MaxValue - GrpcProtocol.FrameHeaderSize : (int)length);
    }

    private static T Parse<T>(ReadOnlySequence<byte> payload, MessageParser<T> parser, bool compressed, int maxBytes)
        where T : IMessage<T>
    {
        if (!compressed)
        {
            return ParseOrThrow(parser, payload);
        }

        var inflated = GzipMessageCodec.Decompress(payload, maxBytes);
        try
        {
            return ParseOrThrow(parser, new ReadOnlySequence<byte>(inflated.Array!, 0, inflated.Count));
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(inflated.Array!);
        }
    }

    private static T ParseOrThrow<T>(MessageParser<T> parser, ReadOnlySequence<byte> payload)
        where T : IMessage<T>
    {
        try
        {
            return parser.ParseFrom(payload);
        }
        catch (InvalidProtocolBufferException e)
        {
            throw new RpcException(StatusCode.Internal, "request message is not valid protobuf for " + typeof(T).Name, e);
        }
    }
}
