using System.Runtime.InteropServices;

namespace UblkCsi.Engine.Abi;

/// <summary><c>struct ublksrv_ctrl_cmd</c>: the header of every control command, in the SQE command area.</summary>
[StructLayout(LayoutKind.Explicit, Size = 32)]
internal struct UblksrvCtrlCmd
{
    [FieldOffset(0)] public uint DevId;
    [FieldOffset(4)] public ushort QueueId;
    [FieldOffset(6)] public ushort Length;
    [FieldOffset(8)] public ulong Address;
    [FieldOffset(16)] public ulong Data0;
    [FieldOffset(24)] public ushort DevPathLength;
    [FieldOffset(26)] public ushort Pad;
    [FieldOffset(28)] public uint Reserved;
}

/// <summary><c>struct ublksrv_ctrl_dev_info</c>.</summary>
[StructLayout(LayoutKind.Explicit, Size = 64)]
internal struct UblksrvCtrlDevInfo
{
    [FieldOffset(0)] public ushort NrHwQueues;
    [FieldOffset(2)] public ushort QueueDepth;
    [FieldOffset(4)] public ushort State;
    [FieldOffset(6)] public ushort Pad0;
    [FieldOffset(8)] public uint MaxIoBufBytes;
    [FieldOffset(12)] public uint DevId;
    [FieldOffset(16)] public int UblksrvPid;
    [FieldOffset(20)] public uint Pad1;
    [FieldOffset(24)] public ulong Flags;
    [FieldOffset(32)] public ulong UblksrvFlags;
    [FieldOffset(40)] public uint OwnerUid;
    [FieldOffset(44)] public uint OwnerGid;
    [FieldOffset(48)] public ulong Reserved1;
    [FieldOffset(56)] public ulong Reserved2;
}

/// <summary><c>struct ublk_param_basic</c>.</summary>
[StructLayout(LayoutKind.Explicit, Size = 32)]
internal struct UblkParamBasic
{
    [FieldOffset(0)] public uint Attrs;
    [FieldOffset(4)] public byte LogicalBsShift;
    [FieldOffset(5)] public byte PhysicalBsShift;
    [FieldOffset(6)] public byte IoOptShift;
    [FieldOffset(7)] public byte IoMinShift;
    [FieldOffset(8)] public uint MaxSectors;
    [FieldOffset(12)] public uint ChunkSectors;
    [FieldOffset(16)] public ulong DevSectors;
    [FieldOffset(24)] public ulong VirtBoundaryMask;
}

/// <summary><c>struct ublk_param_discard</c>.</summary>
[StructLayout(LayoutKind.Explicit, Size = 20)]
internal struct UblkParamDiscard
{
    [FieldOffset(0)] public uint DiscardAlignment;
    [FieldOffset(4)] public uint DiscardGranularity;
    [FieldOffset(8)] public uint MaxDiscardSectors;
    [FieldOffset(12)] public uint MaxWriteZeroesSectors;
    [FieldOffset(16)] public ushort MaxDiscardSegments;
    [FieldOffset(18)] public ushort Reserved0;
}

/// <summary><c>struct ublk_param_devt</c>: read-only, filled by GET_PARAMS.</summary>
[StructLayout(LayoutKind.Explicit, Size = 16)]
internal struct UblkParamDevt
{
    [FieldOffset(0)] public uint CharMajor;
    [FieldOffset(4)] public uint CharMinor;
    [FieldOffset(8)] public uint DiskMajor;
    [FieldOffset(12)] public uint DiskMinor;
}

/// <summary><c>struct ublk_param_zoned</c> (unused by the engine; present for the layout).</summary>
[StructLayout(LayoutKind.Explicit, Size = 32)]
internal struct UblkParamZoned
{
    [FieldOffset(0)] public uint MaxOpenZones;
    [FieldOffset(4)] public uint MaxActiveZones;
    [FieldOffset(8)] public uint MaxZoneAppendSectors;
}

/// <summary>
/// <c>struct ublk_params</c> as of 6.12 (112 bytes). Every member struct is 4-byte aligned after
/// <c>basic</c>, so <c>zoned</c> follows <c>devt</c> directly at 76 and 4 bytes of tail padding
/// round the size to the 8-byte alignment <c>basic</c> imposes.
/// </summary>
[StructLayout(LayoutKind.Explicit, Size = 112)]
internal struct UblkParams
{
    [FieldOffset(0)] public uint Length;
    [FieldOffset(4)] public uint Types;
    [FieldOffset(8)] public UblkParamBasic Basic;
    [FieldOffset(40)] public UblkParamDiscard Discard;
    [FieldOffset(60)] public UblkParamDevt Devt;
    [FieldOffset(76)] public UblkParamZoned Zoned;
}

/// <summary><c>struct ublksrv_io_desc</c>: one request, in the mmapped per-queue array.</summary>
[StructLayout(LayoutKind.Explicit, Size = 24)]
internal struct UblksrvIoDesc
{
    [FieldOffset(0)] public uint OpFlags;
    [FieldOffset(4)] public uint NrSectors;
    [FieldOffset(8)] public ulong StartSector;
    [FieldOffset(16)] public ulong Address;

    public readonly UblkIoOp Op => (UblkIoOp)(OpFlags & 0xff);
}

/// <summary><c>struct ublksrv_io_cmd</c>: FETCH / COMMIT_AND_FETCH argument, in the SQE command area.</summary>
[StructLayout(LayoutKind.Explicit, Size = 16)]
internal struct UblksrvIoCmd
{
    [FieldOffset(0)] public ushort QueueId;
    [FieldOffset(2)] public ushort Tag;
    [FieldOffset(4)] public int Result;
    [FieldOffset(8)] public ulong Address;
}
