using UblkCsi.Engine.Abi;

namespace UblkCsi.UblkEngine.Tests.Abi;

/// <summary>The ioctl-encoded opcodes against the kernel's table (ublk_cmd.h), and the legacy numbers.</summary>
public class OpcodeTests
{
    [Theory]
    [InlineData((byte)UblkControlCommand.GetQueueAffinity, 0x80207501u)]
    [InlineData((byte)UblkControlCommand.GetDevInfo, 0x80207502u)]
    [InlineData((byte)UblkControlCommand.AddDev, 0xC0207504u)]
    [InlineData((byte)UblkControlCommand.DelDev, 0xC0207505u)]
    [InlineData((byte)UblkControlCommand.StartDev, 0xC0207506u)]
    [InlineData((byte)UblkControlCommand.StopDev, 0xC0207507u)]
    [InlineData((byte)UblkControlCommand.SetParams, 0xC0207508u)]
    [InlineData((byte)UblkControlCommand.GetParams, 0x80207509u)]
    [InlineData((byte)UblkControlCommand.StartUserRecovery, 0xC0207510u)]
    [InlineData((byte)UblkControlCommand.EndUserRecovery, 0xC0207511u)]
    [InlineData((byte)UblkControlCommand.GetDevInfo2, 0x80207512u)]
    [InlineData((byte)UblkControlCommand.GetFeatures, 0x80207513u)]
    [InlineData((byte)UblkControlCommand.DelDevAsync, 0x80207514u)]
    public void ControlOpcodesMatchTheKernel(byte nr, uint expected)
    {
        var command = (UblkControlCommand)nr;
        Assert.Equal(expected, UblkAbi.ControlOpcode(command, ioctlEncoded: true));
        Assert.Equal((uint)command, UblkAbi.ControlOpcode(command, ioctlEncoded: false));
    }

    [Theory]
    [InlineData((byte)UblkIoCommand.FetchReq, 0xC0107520u, 0x20u)]
    [InlineData((byte)UblkIoCommand.CommitAndFetchReq, 0xC0107521u, 0x21u)]
    [InlineData((byte)UblkIoCommand.NeedGetData, 0xC0107522u, 0x22u)]
    public void IoOpcodesMatchTheKernel(byte nr, uint encoded, uint legacy)
    {
        var command = (UblkIoCommand)nr;
        Assert.Equal(encoded, UblkAbi.IoOpcode(command, ioctlEncoded: true));
        Assert.Equal(legacy, UblkAbi.IoOpcode(command, ioctlEncoded: false));
    }

    [Fact]
    public void UserCopyWindowFollowsTheKernelFormula()
    {
        Assert.Equal(0x80000000L, UblkAbi.UserCopyOffset(0, 0));
        Assert.Equal(0x80000000L + (3L << 25), UblkAbi.UserCopyOffset(0, 3));
        Assert.Equal(0x80000000L + (2L << 41) + (5L << 25), UblkAbi.UserCopyOffset(2, 5));
    }

    [Fact]
    public void DescriptorMappingUsesTheMaximumDepthStride()
    {
        // round_up(4096 * 24, 4 KiB) = 0x18000 per queue.
        Assert.Equal(0L, UblkAbi.DescriptorMapOffset(0));
        Assert.Equal(0x18000L, UblkAbi.DescriptorMapOffset(1));
        Assert.Equal(4096L, UblkAbi.DescriptorMapLength(128));
        Assert.Equal(8192L, UblkAbi.DescriptorMapLength(200));
    }

    [Theory]
    [InlineData((ushort)0, (byte)0, 0x0UL)]
    [InlineData((ushort)5, (byte)1, 0x1_0005UL)] // UBLK_AUTO_BUF_REG_FALLBACK in bits 16-23
    [InlineData((ushort)0xFFFF, (byte)1, 0x1_FFFFUL)]
    public void AutoBufRegIsPackedAsTheKernelUnpacksIt(ushort index, byte flags, ulong expected)
    {
        var address = UblkAbi.AutoBufRegAddress(index, flags);
        Assert.Equal(expected, address);
        // ublk_sqe_addr_to_auto_buf_reg: index = bits 0-15, flags = 16-23, reserved0 = 24-31 and
        // reserved1 = 32-63 must be zero (else FETCH / COMMIT_AND_FETCH fail with EINVAL).
        Assert.Equal(index, (ushort)address);
        Assert.Equal(flags, (byte)(address >> 16));
        Assert.Equal(0UL, address >> 24);
    }

    [Fact]
    public void AutoBufRegFlagsMatchTheUapiHeader()
    {
        Assert.Equal(1, UblkAbi.AutoBufRegFallback);
        Assert.Equal(1u << 17, UblkAbi.IoFlagNeedRegBuf);
        Assert.Equal(1UL << 11, (ulong)UblkCsi.Engine.UblkFeatures.AutoBufReg);
    }
}
