using System.Buffers;
using Google.Protobuf;
using Grpc.Core;
using UblkCsi.BlockStore.V1;
using UblkCsi.BlockStoreServer.Service.Streaming;
using UblkCsi.Engine;

namespace UblkCsi.BlockStoreServer.Tests;

/// <summary>
/// A stream read of a page-cache volume is read straight into its response while the response is
/// written (<see cref="StreamIo.ReadInResponse"/>): its code and errno follow the data at a fixed width.
/// The bytes must still be an IoResponseBatch that the generated parser reads, and a read that fails
/// then must be answered with its own errno and no data.
/// </summary>
public sealed class StreamReadInResponseTests
{
    [Fact]
    public void TheDataIsReadIntoTheResponseAndTheGeneratedParserReadsIt()
    {
        var response = AnswerRead(new PatternBackend(fail: false), id: 300, offset: 8192, length: 64 * 1024);

        Assert.Equal(300UL, response.Id);
        Assert.Equal(0, response.Code);
        Assert.Equal(0, response.Errno);
        Assert.Equal(PatternBackend.Expected(8192, 64 * 1024), response.Data.ToByteArray());
    }

    [Fact]
    public void AReadThatFailsWhileItsResponseIsWrittenIsAnsweredWithItsErrnoAndNoData()
    {
        var response = AnswerRead(new PatternBackend(fail: true), id: 7, offset: 0, length: 4096);

        Assert.Equal(7UL, response.Id);
        Assert.Equal((int)StatusCode.Internal, response.Code);
        Assert.Equal(BlockBackendException.EIO, response.Errno);
        Assert.All(response.Data.ToByteArray(), b => Assert.Equal(0, b));
    }

    /// <summary>Parses a READ request with the server's codec, answers it in a response and parses that with the generated parser.</summary>
    private static IoResponse AnswerRead(IBlockBackend backend, ulong id, long offset, int length)
    {
        var request = new IoRequestBatch { Requests = { new IoRequest { Id = id, Op = IoOp.Read, Offset = offset, Length = length } } };
        var batch = StreamIo.Method.RequestMarshaller.ContextualDeserializer(new BytesDeserializationContext(request.ToByteArray()));
        var io = Assert.Single(batch.Items);
        io.ReadInResponse(backend);

        var written = new BufferSerializationContext();
        StreamIo.Method.ResponseMarshaller.ContextualSerializer(batch, written);
        Assert.Equal(written.PayloadLength, written.Buffer.WrittenCount);
        batch.ReturnAll();
        return Assert.Single(IoResponseBatch.Parser.ParseFrom(written.Buffer.WrittenSpan).Responses);
    }

    private sealed class BytesDeserializationContext(byte[] payload) : DeserializationContext
    {
        public override int PayloadLength => payload.Length;

        public override byte[] PayloadAsNewBuffer() => (byte[])payload.Clone();

        public override ReadOnlySequence<byte> PayloadAsReadOnlySequence() => new(payload);
    }

    private sealed class BufferSerializationContext : SerializationContext
    {
        public ArrayBufferWriter<byte> Buffer { get; } = new();

        public int PayloadLength { get; private set; } = -1;

        public override void SetPayloadLength(int payloadLength) => PayloadLength = payloadLength;

        public override IBufferWriter<byte> GetBufferWriter() => Buffer;

        public override void Complete()
        {
        }

        public override void Complete(byte[] payload) => Buffer.Write(payload);
    }

    /// <summary>Reads a pattern that depends on the offset, or fails every read with EIO.</summary>
    private sealed class PatternBackend(bool fail) : IBlockBackend
    {
        public BlockBackendInfo Info => new(1 << 20, 512, 4096, BlockBackendFeatures.None);

        public static byte[] Expected(long offset, int length)
        {
            var data = new byte[length];
            for (var i = 0; i < length; i++)
            {
                data[i] = (byte)((offset + i) * 31 % 251);
            }

            return data;
        }

        public ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            if (fail)
            {
                buffer.Span.Fill(0xEE); // what a half-done read could leave: must not reach the client
                throw new BlockBackendException(BlockBackendException.EIO, "the disk under the image failed");
            }

            Expected(offset, buffer.Length).CopyTo(buffer);
            return default;
        }

        public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, BlockWriteFlags flags = BlockWriteFlags.None, CancellationToken cancellationToken = default) => throw new NotSupportedException();

        public ValueTask FlushAsync(CancellationToken cancellationToken = default) => throw new NotSupportedException();

        public ValueTask DiscardAsync(long offset, long length, CancellationToken cancellationToken = default) => throw new NotSupportedException();

        public ValueTask WriteZeroesAsync(long offset, long length, CancellationToken cancellationToken = default) => throw new NotSupportedException();

        public ValueTask DisposeAsync() => default;
    }
}
