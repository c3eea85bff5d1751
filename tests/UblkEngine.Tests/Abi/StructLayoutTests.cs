using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using UblkCsi.Engine.Abi;
using UblkCsi.Engine.IoUring;

namespace UblkCsi.UblkEngine.Tests.Abi;

/// <summary>Every kernel ABI struct against the sizes and offsets of the uapi headers (x86_64).</summary>
public class StructLayoutTests
{
    private static void AssertLayout<T>(int size, params (string Field, int Offset)[] fields)
        where T : struct
    {
        Assert.Equal(size, Unsafe.SizeOf<T>());
        Assert.Equal(size, Marshal.SizeOf<T>());
        foreach (var (field, offset) in fields)
        {
            Assert.True(offset == (int)Marshal.OffsetOf<T>(field), $"{typeof(T).Name}.{field}: expected offset {offset}, found {Marshal.OffsetOf<T>(field)}");
        }
    }

    [Fact]
    public void IoUringParams() => AssertLayout<IoUringParams>(120,
        ("SqEntries", 0), ("CqEntries", 4), ("Flags", 8), ("SqThreadCpu", 12), ("SqThreadIdle", 16),
        ("Features", 20), ("WqFd", 24), ("SqOff", 40), ("CqOff", 80));

    [Fact]
    public void SqringOffsets() => AssertLayout<IoSqringOffsets>(40,
        ("Head", 0), ("Tail", 4), ("RingMask", 8), ("RingEntries", 12), ("Flags", 16), ("Dropped", 20),
        ("Array", 24), ("Resv1", 28), ("UserAddr", 32));

    [Fact]
    public void CqringOffsets() => AssertLayout<IoCqringOffsets>(40,
        ("Head", 0), ("Tail", 4), ("RingMask", 8), ("RingEntries", 12), ("Overflow", 16), ("Cqes", 20),
        ("Flags", 24), ("Resv1", 28), ("UserAddr", 32));

    [Fact]
    public void Sqe() => AssertLayout<IoUringSqe>(64,
        ("Opcode", 0), ("Flags", 1), ("IoPrio", 2), ("Fd", 4), ("Offset", 8), ("CmdOp", 8), ("CmdPad", 12),
        ("Address", 16), ("Length", 24), ("OpFlags", 28), ("UserData", 32), ("BufIndex", 40),
        ("Personality", 42), ("FileIndex", 44), ("Address3", 48), ("Pad2", 56));

    [Fact]
    public void Cqe() => AssertLayout<IoUringCqe>(16, ("UserData", 0), ("Result", 8), ("Flags", 12));

    [Fact]
    public void CtrlCmd() => AssertLayout<UblksrvCtrlCmd>(32,
        ("DevId", 0), ("QueueId", 4), ("Length", 6), ("Address", 8), ("Data0", 16), ("DevPathLength", 24),
        ("Pad", 26), ("Reserved", 28));

    [Fact]
    public void CtrlDevInfo() => AssertLayout<UblksrvCtrlDevInfo>(64,
        ("NrHwQueues", 0), ("QueueDepth", 2), ("State", 4), ("Pad0", 6), ("MaxIoBufBytes", 8), ("DevId", 12),
        ("UblksrvPid", 16), ("Pad1", 20), ("Flags", 24), ("UblksrvFlags", 32), ("OwnerUid", 40), ("OwnerGid", 44),
        ("Reserved1", 48), ("Reserved2", 56));

    [Fact]
    public void ParamBasic() => AssertLayout<UblkParamBasic>(32,
        ("Attrs", 0), ("LogicalBsShift", 4), ("PhysicalBsShift", 5), ("IoOptShift", 6), ("IoMinShift", 7),
        ("MaxSectors", 8), ("ChunkSectors", 12), ("DevSectors", 16), ("VirtBoundaryMask", 24));

    [Fact]
    public void ParamDiscard() => AssertLayout<UblkParamDiscard>(20,
        ("DiscardAlignment", 0), ("DiscardGranularity", 4), ("MaxDiscardSectors", 8),
        ("MaxWriteZeroesSectors", 12), ("MaxDiscardSegments", 16), ("Reserved0", 18));

    [Fact]
    public void ParamDevt() => AssertLayout<UblkParamDevt>(16, ("CharMajor", 0), ("CharMinor", 4), ("DiskMajor", 8), ("DiskMinor", 12));

    [Fact]
    public void ParamZoned() => AssertLayout<UblkParamZoned>(32, ("MaxOpenZones", 0), ("MaxActiveZones", 4), ("MaxZoneAppendSectors", 8));

    [Fact]
    public void Params() => AssertLayout<UblkParams>(112,
        ("Length", 0), ("Types", 4), ("Basic", 8), ("Discard", 40), ("Devt", 60), ("Zoned", 76));

    [Fact]
    public void IoDesc() => AssertLayout<UblksrvIoDesc>(24, ("OpFlags", 0), ("NrSectors", 4), ("StartSector", 8), ("Address", 16));

    [Fact]
    public void RsrcRegister() => AssertLayout<IoUringRsrcRegister>(32, ("Count", 0), ("Flags", 4), ("Reserved2", 8), ("Data", 16), ("Tags", 24));

    [Fact]
    public void IoCmd() => AssertLayout<UblksrvIoCmd>(16, ("QueueId", 0), ("Tag", 2), ("Result", 4), ("Address", 8));
}
