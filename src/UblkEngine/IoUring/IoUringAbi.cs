using System.Runtime.InteropServices;

namespace UblkCsi.Engine.IoUring;

// Kernel ABI of io_uring (include/uapi/linux/io_uring.h, x86_64). Offsets are asserted by the tests.

/// <summary>Flags for io_uring_setup.</summary>
[Flags]
internal enum IoUringSetupFlags : uint
{
    None = 0,
    CqSize = 0x8,
    CoopTaskRun = 0x100,
    Sqe128 = 0x400,
    Cqe32 = 0x800,
    SingleIssuer = 0x1000,
    DeferTaskRun = 0x2000,
}

/// <summary>Feature bits io_uring_setup reports back.</summary>
[Flags]
internal enum IoUringFeatures : uint
{
    None = 0,
    SingleMmap = 1 << 0,
    NoDrop = 1 << 1,
}

/// <summary>Opcodes the engine issues.</summary>
internal enum IoUringOp : byte
{
    Nop = 0,
    Fsync = 3,
    ReadFixed = 4,
    WriteFixed = 5,
    PollAdd = 6,
    Read = 22,
    Write = 23,
    UringCmd = 46,
}

internal static class IoUringConstants
{
    public const uint EnterGetEvents = 1;
    public const long OffSqRing = 0;
    public const long OffCqRing = 0x8000000;
    public const long OffSqes = 0x10000000;
    public const uint FsyncDataSync = 1;

    /// <summary>Where the command area of an SQE starts (16 bytes, or 80 with SQE128).</summary>
    public const int SqeCommandOffset = 48;

    /// <summary>io_uring_register opcode IORING_REGISTER_BUFFERS: an array of iovecs, one per slot.</summary>
    public const uint RegisterBuffers = 0;

    /// <summary>io_uring_register opcode IORING_REGISTER_BUFFERS2 (5.13+): a buffer table described by <see cref="IoUringRsrcRegister"/>.</summary>
    public const uint RegisterBuffers2 = 15;

    /// <summary>IORING_RSRC_REGISTER_SPARSE: the table's slots start empty (kernel-registered request buffers fill them).</summary>
    public const uint RsrcRegisterSparse = 1;
}

/// <summary><c>struct io_uring_rsrc_register</c> (32 bytes): the argument of IORING_REGISTER_BUFFERS2.</summary>
[StructLayout(LayoutKind.Explicit, Size = 32)]
internal struct IoUringRsrcRegister
{
    [FieldOffset(0)] public uint Count;
    [FieldOffset(4)] public uint Flags;
    [FieldOffset(8)] public ulong Reserved2;
    [FieldOffset(16)] public ulong Data;
    [FieldOffset(24)] public ulong Tags;
}

[StructLayout(LayoutKind.Explicit, Size = 40)]
internal struct IoSqringOffsets
{
    [FieldOffset(0)] public uint Head;
    [FieldOffset(4)] public uint Tail;
    [FieldOffset(8)] public uint RingMask;
    [FieldOffset(12)] public uint RingEntries;
    [FieldOffset(16)] public uint Flags;
    [FieldOffset(20)] public uint Dropped;
    [FieldOffset(24)] public uint Array;
    [FieldOffset(28)] public uint Resv1;
    [FieldOffset(32)] public ulong UserAddr;
}

[StructLayout(LayoutKind.Explicit, Size = 40)]
internal struct IoCqringOffsets
{
    [FieldOffset(0)] public uint Head;
    [FieldOffset(4)] public uint Tail;
    [FieldOffset(8)] public uint RingMask;
    [FieldOffset(12)] public uint RingEntries;
    [FieldOffset(16)] public uint Overflow;
    [FieldOffset(20)] public uint Cqes;
    [FieldOffset(24)] public uint Flags;
    [FieldOffset(28)] public uint Resv1;
    [FieldOffset(32)] public ulong UserAddr;
}

[StructLayout(LayoutKind.Explicit, Size = 120)]
internal struct IoUringParams
{
    [FieldOffset(0)] public uint SqEntries;
    [FieldOffset(4)] public uint CqEntries;
    [FieldOffset(8)] public uint Flags;
    [FieldOffset(12)] public uint SqThreadCpu;
    [FieldOffset(16)] public uint SqThreadIdle;
    [FieldOffset(20)] public uint Features;
    [FieldOffset(24)] public uint WqFd;
    [FieldOffset(40)] public IoSqringOffsets SqOff;
    [FieldOffset(80)] public IoCqringOffsets CqOff;
}

/// <summary>A 64-byte submission queue entry. With SQE128 the command area continues into the next 64 bytes.</summary>
[StructLayout(LayoutKind.Explicit, Size = 64)]
internal unsafe struct IoUringSqe
{
    [FieldOffset(0)] public IoUringOp Opcode;
    [FieldOffset(1)] public byte Flags;
    [FieldOffset(2)] public ushort IoPrio;
    [FieldOffset(4)] public int Fd;
    [FieldOffset(8)] public ulong Offset;
    [FieldOffset(8)] public uint CmdOp;
    [FieldOffset(12)] public uint CmdPad;
    [FieldOffset(16)] public ulong Address;
    [FieldOffset(24)] public uint Length;
    [FieldOffset(28)] public uint OpFlags;
    [FieldOffset(32)] public ulong UserData;
    [FieldOffset(40)] public ushort BufIndex;
    [FieldOffset(42)] public ushort Personality;
    [FieldOffset(44)] public uint FileIndex;
    [FieldOffset(48)] public ulong Address3;
    [FieldOffset(56)] public ulong Pad2;

    public void PrepareNop(ulong userData)
    {
        Opcode = IoUringOp.Nop;
        UserData = userData;
    }

    public void PrepareRead(int fd, void* buffer, uint length, ulong offset, ulong userData) =>
        PrepareTransfer(IoUringOp.Read, fd, (ulong)buffer, length, offset, userData);

    public void PrepareWrite(int fd, void* buffer, uint length, ulong offset, ulong userData) =>
        PrepareTransfer(IoUringOp.Write, fd, (ulong)buffer, length, offset, userData);

    /// <summary>
    /// A read into the fixed buffer <paramref name="bufferIndex"/> of the ring's table, starting
    /// <paramref name="bufferOffset"/> bytes into it (a kernel-registered request buffer starts at address 0).
    /// </summary>
    public void PrepareReadFixed(int fd, ushort bufferIndex, ulong bufferOffset, uint length, ulong offset, ulong userData)
    {
        PrepareTransfer(IoUringOp.ReadFixed, fd, bufferOffset, length, offset, userData);
        BufIndex = bufferIndex;
    }

    /// <summary>A write from the fixed buffer <paramref name="bufferIndex"/>; as <see cref="PrepareReadFixed"/>.</summary>
    public void PrepareWriteFixed(int fd, ushort bufferIndex, ulong bufferOffset, uint length, ulong offset, ulong userData)
    {
        PrepareTransfer(IoUringOp.WriteFixed, fd, bufferOffset, length, offset, userData);
        BufIndex = bufferIndex;
    }

    /// <summary>A one-shot poll of <paramref name="fd"/> for <paramref name="events"/> (poll(2) bits; the CQE's result is the ready mask).</summary>
    public void PreparePollAdd(int fd, uint events, ulong userData)
    {
        Opcode = IoUringOp.PollAdd;
        Fd = fd;
        OpFlags = events;
        UserData = userData;
    }

    public void PrepareFsync(int fd, bool dataOnly, ulong userData)
    {
        Opcode = IoUringOp.Fsync;
        Fd = fd;
        OpFlags = dataOnly ? IoUringConstants.FsyncDataSync : 0;
        UserData = userData;
    }

    /// <summary>A passthrough command; the caller fills the command area (<see cref="CommandArea"/>).</summary>
    public void PrepareUringCmd(int fd, uint cmdOp, ulong userData)
    {
        Opcode = IoUringOp.UringCmd;
        Fd = fd;
        CmdOp = cmdOp;
        CmdPad = 0;
        UserData = userData;
    }

    /// <summary>The command area at offset 48 of the SQE at <paramref name="sqe"/>.</summary>
    public static byte* CommandArea(IoUringSqe* sqe) => (byte*)sqe + IoUringConstants.SqeCommandOffset;

    private void PrepareTransfer(IoUringOp opcode, int fd, ulong address, uint length, ulong offset, ulong userData)
    {
        Opcode = opcode;
        Fd = fd;
        Address = address;
        Length = length;
        Offset = offset;
        UserData = userData;
    }
}

[StructLayout(LayoutKind.Explicit, Size = 16)]
internal struct IoUringCqe
{
    [FieldOffset(0)] public ulong UserData;
    [FieldOffset(8)] public int Result;
    [FieldOffset(12)] public uint Flags;
}
