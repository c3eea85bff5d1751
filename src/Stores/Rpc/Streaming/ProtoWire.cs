using System.Buffers;
using System.Text;

namespace UblkCsi.Stores.Rpc.Streaming;

/// <summary>
/// The few pieces of the protobuf wire format the stream's hand-written codecs need (varints, tags,
/// length-delimited fields). The stream's messages are written and read with these instead of the
/// generated classes so that payloads go straight between the transport's buffers and the caller's
/// (pooled) buffers: no message object, no ByteString copy, no allocation per I/O. The bytes are
/// exactly what the generated IoRequest/IoResponse classes read and write.
/// </summary>
public static class ProtoWire
{
    public const int VarintType = 0;
    public const int Fixed64Type = 1;
    public const int LengthDelimitedType = 2;
    public const int Fixed32Type = 5;

    /// <summary>Bytes a varint of <paramref name="value"/> takes.</summary>
    public static int VarintSize(ulong value)
    {
        var size = 1;
        while (value >= 0x80)
        {
            value >>= 7;
            size++;
        }

        return size;
    }

    /// <summary>Bytes a varint field takes (tag and value), or 0 for the default value 0, which proto3 omits.</summary>
    public static int VarintFieldSize(int field, ulong value) => value == 0 ? 0 : VarintSize(Tag(field, VarintType)) + VarintSize(value);

    /// <summary>Bytes a length-delimited field of <paramref name="length"/> bytes takes (omitted when empty).</summary>
    public static int BytesFieldSize(int field, int length) =>
        length == 0 ? 0 : VarintSize(Tag(field, LengthDelimitedType)) + VarintSize((ulong)length) + length;

    public static uint Tag(int field, int wireType) => (uint)((field << 3) | wireType);

    /// <summary>Writes a varint at the start of <paramref name="span"/>; returns the bytes written.</summary>
    public static int WriteVarint(Span<byte> span, ulong value)
    {
        var i = 0;
        while (value >= 0x80)
        {
            span[i++] = (byte)(value | 0x80);
            value >>= 7;
        }

        span[i++] = (byte)value;
        return i;
    }

    /// <summary>Writes a varint field unless it has the default value; returns the bytes written.</summary>
    public static int WriteVarintField(Span<byte> span, int field, ulong value)
    {
        if (value == 0)
        {
            return 0;
        }

        var n = WriteVarint(span, Tag(field, VarintType));
        return n + WriteVarint(span[n..], value);
    }

    /// <summary>Bytes of a value in <see cref="WriteFixedWidthVarintField"/>.</summary>
    public const int FixedVarintWidth = 5;

    /// <summary>Bytes a field of <see cref="WriteFixedWidthVarintField"/> takes (tag and value).</summary>
    public static int FixedWidthVarintFieldSize(int field) => VarintSize(Tag(field, VarintType)) + FixedVarintWidth;

    /// <summary>
    /// Writes a varint field even when it is 0, its value padded to <see cref="FixedVarintWidth"/> bytes
    /// (zero high-order groups with the continuation bit set, which every protobuf parser reads as the same value):
    /// for a value known only after the message's size was set. Returns the bytes written.
    /// </summary>
    public static int WriteFixedWidthVarintField(Span<byte> span, int field, uint value)
    {
        var n = WriteVarint(span, Tag(field, VarintType));
        for (var i = 1; i < FixedVarintWidth; i++)
        {
            span[n++] = (byte)(value | 0x80);
            value >>= 7;
        }

        span[n++] = (byte)value; // a uint has 4 bits left after four groups of 7: no continuation bit
        return n;
    }

    /// <summary>Writes the tag and length of a length-delimited field (the caller writes the bytes); returns the bytes written.</summary>
    public static int WriteBytesHeader(Span<byte> span, int field, int length)
    {
        var n = WriteVarint(span, Tag(field, LengthDelimitedType));
        return n + WriteVarint(span[n..], (ulong)length);
    }

    /// <summary>Copies <paramref name="data"/> into <paramref name="writer"/> in as many pieces as its buffers need.</summary>
    public static void WriteRaw(IBufferWriter<byte> writer, ReadOnlySpan<byte> data)
    {
        while (!data.IsEmpty)
        {
            var span = writer.GetSpan(Math.Min(data.Length, 64 * 1024));
            var n = Math.Min(span.Length, data.Length);
            data[..n].CopyTo(span);
            writer.Advance(n);
            data = data[n..];
        }
    }

    /// <summary>Reads a varint; false when the message ends inside it or it is longer than 10 bytes.</summary>
    public static bool TryReadVarint(ref SequenceReader<byte> reader, out ulong value)
    {
        value = 0;
        for (var shift = 0; shift < 70; shift += 7)
        {
            if (!reader.TryRead(out var b))
            {
                return false;
            }

            value |= (ulong)(b & 0x7F) << shift;
            if (b < 0x80)
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>Reads a field's tag: its number and wire type.</summary>
    public static bool TryReadTag(ref SequenceReader<byte> reader, out int field, out int wireType)
    {
        field = 0;
        wireType = 0;
        if (!TryReadVarint(ref reader, out var tag) || tag > int.MaxValue)
        {
            return false;
        }

        field = (int)(tag >> 3);
        wireType = (int)(tag & 7);
        return field > 0;
    }

    /// <summary>Reads the length of a length-delimited field and checks that many bytes remain.</summary>
    public static bool TryReadLength(ref SequenceReader<byte> reader, out int length)
    {
        length = 0;
        if (!TryReadVarint(ref reader, out var value) || value > (ulong)reader.Remaining)
        {
            return false;
        }

        length = (int)value;
        return true;
    }

    /// <summary>Skips a field of a type this codec does not read (forward compatibility).</summary>
    public static bool TrySkip(ref SequenceReader<byte> reader, int wireType)
    {
        switch (wireType)
        {
            case VarintType:
                return TryReadVarint(ref reader, out _);
            case Fixed64Type:
                return TryAdvance(ref reader, 8);
            case Fixed32Type:
                return TryAdvance(ref reader, 4);
            case LengthDelimitedType:
                if (!TryReadLength(ref reader, out var length))
                {
                    return false;
                }

                reader.Advance(length);
                return true;
            default:
                return false;
        }
    }

    /// <summary>Reads a UTF-8 string field's bytes (allocates the string: only for rare fields).</summary>
    public static bool TryReadString(ref SequenceReader<byte> reader, out string value)
    {
        value = "";
        if (!TryReadLength(ref reader, out var length))
        {
            return false;
        }

        var bytes = reader.UnreadSequence.Slice(0, length);
        value = Encoding.UTF8.GetString(bytes);
        reader.Advance(length);
        return true;
    }

    private static bool TryAdvance(ref SequenceReader<byte> reader, int count)
    {
        if (reader.Remaining < count)
        {
            return false;
        }

        reader.Advance(count);
        return true;
    }
}
