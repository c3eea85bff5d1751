using System.Buffers;
using System.Net;
using Google.Protobuf;
using UblkCsi.GrpcHosting.Wire;

namespace UblkCsi.GrpcHosting.Client;

/// <summary>
/// The body of a unary request: one frame, serialized straight into a pooled buffer and written
/// with a single write, its length known up front.
/// </summary>
internal sealed class GrpcRequestContent : HttpContent
{
    private readonly IMessage _message;
    private readonly int _messageSize;
    private byte[]? _buffer;

    public GrpcRequestContent(IMessage message)
    {
        _message = message;
        _messageSize = message.CalculateSize();
        Headers.TryAddWithoutValidation("Content-Type", GrpcProtocol.ContentType);
    }

    protected override Task SerializeToStreamAsync(Stream stream, TransportContext? context) =>
        SerializeToStreamAsync(stream, context, CancellationToken.None);

    protected override async Task SerializeToStreamAsync(Stream stream, TransportContext? context, CancellationToken cancellationToken)
    {
        var frameLength = GrpcProtocol.FrameHeaderSize + _messageSize;
        _buffer ??= ArrayPool<byte>.Shared.Rent(frameLength);
        GrpcProtocol.WriteFrameHeader(_buffer, _messageSize);
        _message.WriteTo(_buffer.AsSpan(GrpcProtocol.FrameHeaderSize, _messageSize));
        await stream.WriteAsync(_buffer.AsMemory(0, frameLength), cancellationToken);
    }

    protected override bool TryComputeLength(out long length)
    {
        length = GrpcProtocol.FrameHeaderSize + _messageSize;
        return true;
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing && _buffer is not null)
        {
            ArrayPool<byte>.Shared.Return(_buffer);
            _buffer = null;
        }

        base.Dispose(disposing);
    }
}
