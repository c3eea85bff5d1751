using System.Buffers;
using System.IO.Compression;

namespace UblkCsi.GrpcHosting.Wire;

/// <summary>Inflates gzip-compressed gRPC messages without letting a small input expand past the receive limit.</summary>
internal static class GzipMessageCodec
{
    /// <summary>
    /// Decompresses <paramref name="compressed"/> into a buffer rented from <see cref="ArrayPool{T}.Shared"/>;
    /// the caller returns it. Throws <see cref="RpcException"/> for corrupt data or an oversized result.
    /// </summary>
    public static ArraySegment<byte> Decompress(ReadOnlySequence<byte> compressed, int maxBytes)
    {
        var input = ArrayPool<byte>.Shared.Rent((int)compressed.Length);
        var output = ArrayPool<byte>.Shared.Rent(Math.Min(maxBytes + 1, Math.Max(4096, (int)compressed.Length * 4)));
        var length = 0;
        try
        {
            compressed.CopyTo(input);
            using var gzip = new GZipStream(new MemoryStream(input, 0, (int)compressed.Length), CompressionMode.Decompress);
            while (true)
            {
                if (length == output.Length)
                {
                    if (output.Length > maxBytes)
                    {
                        throw new RpcException(StatusCode.ResourceExhausted, $"decompressed message is larger than the limit of {maxBytes} bytes");
                    }

                    var larger = ArrayPool<byte>.Shared.Rent(Math.Min(maxBytes + 1, output.Length * 2));
                    output.AsSpan(0, length).CopyTo(larger);
                    ArrayPool<byte>.Shared.Return(output);
                    output = larger;
                }

                var read = gzip.Read(output, length, output.Length - length);
                if (read == 0)
                {
                    break;
                }

                length += read;
                if (length > maxBytes)
                {
                    throw new RpcException(StatusCode.ResourceExhausted, $"decompressed message is larger than the limit of {maxBytes} bytes");
                }
            }

            var result = new ArraySegment<byte>(output, 0, length);
            output = null!;
            return result;
        }
        catch (InvalidDataException e)
        {
            throw new RpcException(StatusCode.Internal, "compressed message is not valid gzip data", e);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(input);
            if (output is not null)
            {
                ArrayPool<byte>.Shared.Return(output);
            }
        }
    }
}
