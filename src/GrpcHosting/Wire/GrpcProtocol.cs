namespace UblkCsi.GrpcHosting.Wire;

/// <summary>Header names and values of the gRPC-over-HTTP/2 protocol.</summary>
internal static class GrpcProtocol
{
    public const string ContentType = "application/grpc";
    public const string StatusHeader = "grpc-status";
    public const string MessageHeader = "grpc-message";
    public const string StatusDetailsHeader = "grpc-status-details-bin";
    public const string EncodingHeader = "grpc-encoding";
    public const string AcceptEncodingHeader = "grpc-accept-encoding";
    public const string TimeoutHeader = "grpc-timeout";
    public const string IdentityEncoding = "identity";
    public const string GzipEncoding = "gzip";

    /// <summary>Encodings this implementation can decode, as advertised in grpc-accept-encoding.</summary>
    public const string SupportedEncodings = "identity,gzip";

    /// <summary>Every message is preceded by a 1-byte compressed flag and a 4-byte big-endian length.</summary>
    public const int FrameHeaderSize = 5;

    /// <summary>Default limit for a received message: the limit grpc-go and grpc-dotnet use.</summary>
    public const int DefaultMaxReceiveMessageBytes = 4 * 1024 * 1024;

    /// <summary>True for <c>application/grpc</c> and its <c>+proto</c>/<c>;params</c> variants.</summary>
    public static bool IsGrpcContentType(string? contentType)
    {
        if (contentType is null || !contentType.StartsWith(ContentType, StringComparison.OrdinalIgnoreCase))
        {
            return false;
        }

        return contentType.Length == ContentType.Length
            || contentType[ContentType.Length] is '+' or ';';
    }

    /// <summary>Writes a frame header for an uncompressed message of <paramref name="length"/> bytes.</summary>
    public static void WriteFrameHeader(Span<byte> destination, int length)
    {
        destination[0] = 0;
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(destination[1..], (uint)length);
    }
}
