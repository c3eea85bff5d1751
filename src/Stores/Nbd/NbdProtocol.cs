using System.Buffers.Binary;

namespace UblkCsi.Stores.Nbd;

/// <summary>
/// Numbers of the NBD protocol (NetworkBlockDevice/nbd doc/proto.md) that this client uses. Every
/// field on the wire is big-endian.
/// </summary>
internal static class NbdProtocol
{
    /// <summary>"NBDMAGIC": first 8 bytes a server sends.</summary>
    public const ulong InitMagic = 0x4e42444d41474943;

    /// <summary>"IHAVEOPT": newstyle negotiation; also prefixes every option the client sends.</summary>
    public const ulong OptionMagic = 0x49484156454F5054;

    /// <summary>Second magic of the oldstyle negotiation, which this client does not speak.</summary>
    public const ulong OldstyleMagic = 0x00420281861253;

    /// <summary>Prefix of every option reply (fixed newstyle).</summary>
    public const ulong OptionReplyMagic = 0x3e889045565a9;

    public const uint RequestMagic = 0x25609513;
    public const uint SimpleReplyMagic = 0x67446698;
    public const uint StructuredReplyMagic = 0x668e33ef;

    /// <summary>Bytes of a request header: magic, flags, type, handle, offset, length.</summary>
    public const int RequestHeaderSize = 28;

    /// <summary>Bytes of a simple reply: magic, error, handle.</summary>
    public const int SimpleReplySize = 16;

    /// <summary>Bytes of a structured reply chunk header: magic, flags, type, handle, length.</summary>
    public const int StructuredReplyHeaderSize = 20;

    /// <summary>Longest string the protocol allows (export names, messages).</summary>
    public const int MaxStringBytes = 4096;

    /// <summary>Writes a transmission request header (<see cref="RequestHeaderSize"/> bytes).</summary>
    public static void WriteRequestHeader(Span<byte> destination, NbdCommand command, NbdCommandFlags flags, ulong handle, long offset, uint length)
    {
        BinaryPrimitives.WriteUInt32BigEndian(destination, RequestMagic);
        BinaryPrimitives.WriteUInt16BigEndian(destination[4..], (ushort)flags);
        BinaryPrimitives.WriteUInt16BigEndian(destination[6..], (ushort)command);
        BinaryPrimitives.WriteUInt64BigEndian(destination[8..], handle);
        BinaryPrimitives.WriteUInt64BigEndian(destination[16..], (ulong)offset);
        BinaryPrimitives.WriteUInt32BigEndian(destination[24..], length);
    }

    /// <summary>
    /// Largest option reply or non-data reply chunk this client accepts. Real ones are tens of bytes;
    /// a larger length is a broken or hostile server, refused before anything is allocated.
    /// </summary>
    public const int MaxControlPayload = 64 * 1024;

    /// <summary>Maximum block size a server that states none is assumed to accept (the protocol's default).</summary>
    public const int DefaultMaxBlockSize = 32 * 1024 * 1024;
}

/// <summary>Handshake flags (server, 16 bits).</summary>
[Flags]
internal enum NbdHandshakeFlags : ushort
{
    None = 0,
    FixedNewstyle = 1 << 0,
    NoZeroes = 1 << 1,
}

/// <summary>Client flags (32 bits).</summary>
[Flags]
internal enum NbdClientFlags : uint
{
    None = 0,
    FixedNewstyle = 1 << 0,
    NoZeroes = 1 << 1,
}

/// <summary>Transmission flags of an export (16 bits).</summary>
[Flags]
public enum NbdTransmissionFlags : ushort
{
    None = 0,
    HasFlags = 1 << 0,
    ReadOnly = 1 << 1,
    SendFlush = 1 << 2,
    SendFua = 1 << 3,
    Rotational = 1 << 4,
    SendTrim = 1 << 5,
    SendWriteZeroes = 1 << 6,
    SendDf = 1 << 7,
    CanMultiConn = 1 << 8,
    SendResize = 1 << 9,
    SendCache = 1 << 10,
    SendFastZero = 1 << 11,
}

/// <summary>Options of the negotiation phase.</summary>
internal enum NbdOption : uint
{
    ExportName = 1,
    Abort = 2,
    List = 3,
    StartTls = 5,
    Info = 6,
    Go = 7,
    StructuredReply = 8,
}

/// <summary>Option reply types; errors have bit 31 set.</summary>
internal enum NbdOptionReply : uint
{
    Ack = 1,
    Server = 2,
    Info = 3,
    ErrorBit = 1u << 31,
    ErrUnsupported = ErrorBit + 1,
    ErrPolicy = ErrorBit + 2,
    ErrInvalid = ErrorBit + 3,
    ErrPlatform = ErrorBit + 4,
    ErrTlsRequired = ErrorBit + 5,
    ErrUnknown = ErrorBit + 6,
    ErrShutdown = ErrorBit + 7,
    ErrBlockSizeRequired = ErrorBit + 8,
    ErrTooBig = ErrorBit + 9,
}

/// <summary>Information items of NBD_OPT_GO / NBD_REP_INFO.</summary>
internal enum NbdInfo : ushort
{
    Export = 0,
    Name = 1,
    Description = 2,
    BlockSize = 3,
}

/// <summary>Transmission commands.</summary>
public enum NbdCommand : ushort
{
    Read = 0,
    Write = 1,
    Disconnect = 2,
    Flush = 3,
    Trim = 4,
    Cache = 5,
    WriteZeroes = 6,
}

/// <summary>Command flags (16 bits).</summary>
[Flags]
public enum NbdCommandFlags : ushort
{
    None = 0,

    /// <summary>Forced unit access: the reply means the data is durable.</summary>
    Fua = 1 << 0,

    /// <summary>WRITE_ZEROES must allocate (not punch a hole).</summary>
    NoHole = 1 << 1,

    /// <summary>Do not fragment a structured read reply.</summary>
    DontFragment = 1 << 2,
}

/// <summary>Structured reply chunk types.</summary>
internal enum NbdReplyType : ushort
{
    None = 0,
    OffsetData = 1,
    OffsetHole = 2,
    BlockStatus = 5,
    ErrorBit = 1 << 15,
    Error = ErrorBit + 1,
    ErrorOffset = ErrorBit + 2,
}

/// <summary>Structured reply chunk flags.</summary>
[Flags]
internal enum NbdReplyFlags : ushort
{
    None = 0,
    Done = 1 << 0,
}

/// <summary>Error values on the wire (the protocol fixes them to the Linux numbers).</summary>
internal static class NbdErrno
{
    public const int EPERM = 1;
    public const int EIO = 5;
    public const int ENOMEM = 12;
    public const int EINVAL = 22;
    public const int ENOSPC = 28;
    public const int EOVERFLOW = 75;
    public const int ENOTSUP = 95;
    public const int ESHUTDOWN = 108;
}
