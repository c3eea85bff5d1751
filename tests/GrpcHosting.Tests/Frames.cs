using System.Buffers.Binary;
using System.IO.Compression;
using Google.Protobuf;

namespace UblkCsi.GrpcHosting.Tests;

/// <summary>Builds raw gRPC request bodies, valid and broken.</summary>
public static class Frames
{
    public static byte[] Of(IMessage message) => Of(message.ToByteArray());

    public static byte[] Of(byte[] payload, byte compressedFlag = 0, uint? declaredLength = null)
    {
        var frame = new byte[5 + payload.Length];
        frame[0] = compressedFlag;
        BinaryPrimitives.WriteUInt32BigEndian(frame.AsSpan(1), declaredLength ?? (uint)payload.Length);
        payload.CopyTo(frame.AsSpan(5));
        return frame;
    }

    public static byte[] Gzip(byte[] data)
    {
        using var output = new MemoryStream();
        using (var gzip = new GZipStream(output, CompressionLevel.Fastest, leaveOpen: true))
        {
            gzip.Write(data);
        }

        return output.ToArray();
    }
}
