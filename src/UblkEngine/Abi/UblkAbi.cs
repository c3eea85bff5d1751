namespace UblkCsi.Engine.Abi;

// Kernel ABI of ublk (include/uapi/linux/ublk_cmd.h). Everything here is a fixed kernel value.

/// <summary>Control command numbers (the _IOC_NR part of the opcode).</summary>
internal enum UblkControlCommand : byte
{
    GetQueueAffinity = 0x01,
    GetDevInfo = 0x02,
    AddDev = 0x04,
    DelDev = 0x05,
    StartDev = 0x06,
    StopDev = 0x07,
    SetParams = 0x08,
    GetParams = 0x09,
    StartUserRecovery = 0x10,
    EndUserRecovery = 0x11,
    GetDevInfo2 = 0x12,
    GetFeatures = 0x13,
    DelDevAsync = 0x14,
    UpdateSize = 0x15,
}

/// <summary>Per-tag I/O command numbers.</summary>
internal enum UblkIoCommand : byte
{
    FetchReq = 0x20,
    CommitAndFetchReq = 0x21,
    NeedGetData = 0x22,
}

/// <summary>Request operations in <c>ublksrv_io_desc.op_flags</c> bits 0-7.</summary>
internal enum UblkIoOp : byte
{
    Read = 0,
    Write = 1,
    Flush = 2,
    Discard = 3,
    WriteSame = 4,
    WriteZeroes = 5,
}

internal static class UblkAbi
{
    public const string ControlDevicePath = "/dev/ublk-control";
    public const string CharDevicePrefix = "/dev/ublkc";
    public const string BlockDevicePrefix = "/dev/ublkb";

    public const int MaxQueueDepth = 4096;
    public const int MaxQueues = 4096;

    /// <summary>Size of one request descriptor in the mmapped per-queue array.</summary>
    public const int IoDescSize = 24;

    /// <summary>User-copy window: byte <c>off</c> of request (q, tag) is at this + (q &lt;&lt; 41) + (tag &lt;&lt; 25) + off.</summary>
    public const long UserCopyBase = 0x80000000L;
    public const int UserCopyTagShift = 25;
    public const int UserCopyQueueShift = 41;

    /// <summary>Largest single request in user-copy mode (the 25-bit per-tag window).</summary>
    public const int UserCopyMaxBytes = 1 << UserCopyTagShift;

    public const int IoResultOk = 0;
    public const int IoResultNeedGetData = 1;

    /// <summary>CQE result when the kernel is tearing the queue down (-ENODEV): do not resubmit the tag.</summary>
    public const int IoResultAbort = -19;

    public const uint IoFlagFua = 1u << 13;
    public const uint IoFlagNoUnmap = 1u << 15;

    /// <summary>UBLK_IO_F_NEED_REG_BUF: automatic buffer registration failed for this request (only with <see cref="AutoBufRegFallback"/>); nothing is registered at its index.</summary>
    public const uint IoFlagNeedRegBuf = 1u << 17;

    /// <summary>UBLK_AUTO_BUF_REG_FALLBACK (struct ublk_auto_buf_reg.flags): deliver the request with <see cref="IoFlagNeedRegBuf"/> instead of failing it when registration fails.</summary>
    public const byte AutoBufRegFallback = 1;

    public const uint AttrReadOnly = 1u << 0;
    public const uint AttrRotational = 1u << 1;
    public const uint AttrVolatileCache = 1u << 2;
    public const uint AttrFua = 1u << 3;

    public const uint ParamTypeBasic = 1u << 0;
    public const uint ParamTypeDiscard = 1u << 1;
    public const uint ParamTypeDevt = 1u << 2;
    public const uint ParamTypeZoned = 1u << 3;

    public const uint AllocateDeviceId = uint.MaxValue;
    public const ushort NoQueue = ushort.MaxValue;

    /// <summary>
    /// The ioctl-style opcode the kernel prefers: _IOC(dir, 'u', nr, size). Control commands carry a
    /// 32-byte header, I/O commands a 16-byte one.
    /// </summary>
    public static uint IoctlEncode(uint direction, byte nr, uint size) =>
        (direction << 30) | (size << 16) | ('u' << 8) | nr;

    private const uint IocRead = 2;
    private const uint IocReadWrite = 3;

    public static uint ControlOpcode(UblkControlCommand command, bool ioctlEncoded)
    {
        if (!ioctlEncoded)
        {
            return (byte)command;
        }

        var direction = command switch
        {
            UblkControlCommand.GetQueueAffinity or UblkControlCommand.GetDevInfo or UblkControlCommand.GetParams
                or UblkControlCommand.GetDevInfo2 or UblkControlCommand.GetFeatures or UblkControlCommand.DelDevAsync => IocRead,
            _ => IocReadWrite,
        };
        return IoctlEncode(direction, (byte)command, 32);
    }

    public static uint IoOpcode(UblkIoCommand command, bool ioctlEncoded) =>
        ioctlEncoded ? IoctlEncode(IocReadWrite, (byte)command, 16) : (byte)command;

    /// <summary>Byte offset of the mmapped descriptor array of <paramref name="queueId"/> on /dev/ublkcN.</summary>
    public static long DescriptorMapOffset(int queueId) => queueId * RoundUpToPage(MaxQueueDepth * IoDescSize);

    /// <summary>Length of the descriptor mapping of a queue of <paramref name="depth"/> tags.</summary>
    public static long DescriptorMapLength(int depth) => RoundUpToPage(depth * IoDescSize);

    /// <summary>
    /// The SQE <c>addr</c> (offset 16, not the command's own addr) of a FETCH or COMMIT_AND_FETCH under
    /// UBLK_F_AUTO_BUF_REG: <c>struct ublk_auto_buf_reg</c> packed as index (bits 0-15), flags (16-23),
    /// reserved0 (24-31) and reserved1 (32-63); the reserved bits must be zero or the command fails with EINVAL.
    /// </summary>
    public static ulong AutoBufRegAddress(ushort index, byte flags) => index | ((ulong)flags << 16);

    public static long UserCopyOffset(int queueId, int tag) =>
        UserCopyBase + ((long)queueId << UserCopyQueueShift) + ((long)tag << UserCopyTagShift);

    public static long RoundUpToPage(long value)
    {
        var page = Environment.SystemPageSize;
        return (value + page - 1) / page * page;
    }
}
