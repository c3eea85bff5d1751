using UblkCsi.Engine;
using UblkCsi.Engine.Abi;
using UblkCsi.Engine.Backends;
using UblkCsi.UblkEngine.Tests.Device;

namespace UblkCsi.UblkEngine.Tests.Control;

public class ControlAndOptionsTests
{
    [Fact]
    public void OpeningAMissingControlDeviceSaysToLoadTheModule()
    {
        var e = Assert.Throws<UblkException>(() => UblkControl.Open("/nonexistent/ublk-control"));
        Assert.Equal(2, e.Errno);
        Assert.Contains("modprobe ublk_drv", e.Message);
    }

    [Fact]
    public void OnThisHostTheProbeExplainsWhatIsMissing()
    {
        var report = HostSupport.Probe();
        Assert.True(report.IoUringAvailable);
        if (!report.ControlDevicePresent)
        {
            Assert.Contains("ublk_drv", report.Problem);
        }
    }

    [Fact]
    public void ParametersFollowTheBackend()
    {
        var info = new BlockBackendInfo(1L << 30, 512, 4096, BlockBackendFeatures.VolatileCache | BlockBackendFeatures.Fua | BlockBackendFeatures.Discard);
        var parameters = UblkDeviceParameters.ForBackend(info, 524288);
        var kernel = parameters.ToKernel();
        Assert.Equal(112u, kernel.Length);
        Assert.Equal(UblkAbi.ParamTypeBasic | UblkAbi.ParamTypeDiscard, kernel.Types);
        Assert.Equal(UblkAbi.AttrVolatileCache | UblkAbi.AttrFua, kernel.Basic.Attrs);
        Assert.Equal(9, kernel.Basic.LogicalBsShift);
        Assert.Equal(12, kernel.Basic.PhysicalBsShift);
        Assert.Equal(1024u, kernel.Basic.MaxSectors);
        Assert.Equal((ulong)(1L << 21), kernel.Basic.DevSectors);
        Assert.Equal(512u, kernel.Discard.DiscardGranularity);
        Assert.True(kernel.Discard.MaxDiscardSectors > 0);
        Assert.Equal(0u, kernel.Discard.MaxWriteZeroesSectors);
        Assert.Equal(1, kernel.Discard.MaxDiscardSegments);

        // Round trip through the kernel representation.
        Assert.Equal(parameters, UblkDeviceParameters.FromKernel(kernel));
    }

    [Fact]
    public void FuaWithoutAVolatileCacheIsNotAnnounced()
    {
        var info = new BlockBackendInfo(1 << 20, 4096, 4096, BlockBackendFeatures.Fua | BlockBackendFeatures.ReadOnly);
        var kernel = UblkDeviceParameters.ForBackend(info, 65536).ToKernel();
        Assert.Equal(UblkAbi.AttrReadOnly, kernel.Basic.Attrs);
        Assert.Equal(UblkAbi.ParamTypeBasic, kernel.Types);
    }

    [Theory]
    [InlineData(1000L, 512, 4096, "SizeBytes")]
    [InlineData(1L << 20, 768, 4096, "LogicalBlockSize")]
    [InlineData(1L << 20, 8192, 8192, "LogicalBlockSize")]
    [InlineData(1L << 20, 4096, 512, "PhysicalBlockSize")]
    public void InvalidParametersNameTheParameter(long size, int logical, int physical, string parameter)
    {
        var parameters = new UblkDeviceParameters(size, logical, physical, 65536, false, false, false, 0, 0, 0);
        Assert.Equal(parameter, Assert.Throws<ArgumentException>(parameters.Validate).ParamName);
    }

    [Theory]
    [InlineData(0, 128, 524288, "Queues")]
    [InlineData(1, 0, 524288, "Depth")]
    [InlineData(1, 4097, 524288, "Depth")]
    [InlineData(1, 128, 1000, "MaxIoBytes")]
    [InlineData(1, 128, 64 << 20, "MaxIoBytes")]
    public void InvalidOptionsNameTheOptionAndItsRange(int queues, int depth, int maxIo, string option)
    {
        var options = new UblkDeviceOptions { Queues = queues, Depth = depth, MaxIoBytes = maxIo };
        var e = Assert.Throws<ArgumentOutOfRangeException>(options.Validate);
        Assert.Equal(option, e.ParamName);
        Assert.Contains(option, e.Message);
    }

    [Fact]
    public void DefaultOptionsAreValidAndCheap()
    {
        var options = new UblkDeviceOptions();
        options.Validate();
        Assert.InRange(options.EffectiveQueues, 1, 4);
        Assert.Equal(128, options.Depth);
        Assert.True(options.EnableRecovery);
        Assert.Equal("/var/lib/ublk-csi/devices", options.RecoveryStateDirectory);
    }

    private const UblkFeatures Kernel617 = UblkFeatures.UserCopy | UblkFeatures.UserRecovery | UblkFeatures.UserRecoveryReissue
        | UblkFeatures.CmdIoctlEncode | UblkFeatures.AutoBufReg | UblkFeatures.UpdateSize | UblkFeatures.Quiesce;

    private const UblkFeatures Kernel612 = UblkFeatures.UserCopy | UblkFeatures.UserRecovery | UblkFeatures.UserRecoveryReissue
        | UblkFeatures.CmdIoctlEncode | UblkFeatures.NeedGetData | UblkFeatures.Zoned;

    [Fact]
    public void FeatureFlagsReadAsNamesWithTheRawValueEvenWithBitsThisEngineCannotName()
    {
        // What 6.17.13 granted an attach: 0x68c2. A bit no enum member names must not hide the others.
        const UblkFeatures granted = (UblkFeatures)0x68c2;
        Assert.Equal("UringCmdCompInTask, CmdIoctlEncode, UserCopy, AutoBufReg, PerIoDaemon, BufRegOffDaemon (0x68c2)", granted.Describe());
        Assert.Equal("UserCopy, bit 40 (0x10000000080)", (UblkFeatures.UserCopy | (UblkFeatures)(1UL << 40)).Describe());
        Assert.Equal("none (0x0)", UblkFeatures.None.Describe());
    }

    [Fact]
    public void ZeroCopyIsAskedForOnlyWhenTheKernelOffersItAndTheBackendServesIt()
    {
        var options = new UblkDeviceOptions();
        var serving = new RegisteredBufferStub(serves: true);

        var flags = UblkDevice.RequestedFlags(Kernel617, options, serving);
        Assert.Equal(UblkFeatures.AutoBufReg | UblkFeatures.UserCopy, flags & (UblkFeatures.AutoBufReg | UblkFeatures.UserCopy));

        // Any other backend, and 6.12, stay exactly as before: user copy, no registration.
        Assert.Equal(UblkFeatures.None, UblkDevice.RequestedFlags(Kernel617, options, new RegisteredBufferStub(serves: false)) & UblkFeatures.AutoBufReg);
        Assert.Equal(UblkFeatures.None, UblkDevice.RequestedFlags(Kernel617, options, new NullBackend(1 << 20)) & UblkFeatures.AutoBufReg);
        Assert.Equal(
            UblkDevice.RequestedFlags(Kernel612, options, new NullBackend(1 << 20)),
            UblkDevice.RequestedFlags(Kernel612, options, serving));
        Assert.Equal(UblkFeatures.None, UblkDevice.RequestedFlags(Kernel612, options, serving) & UblkFeatures.AutoBufReg);

        // Turned off, or without user copy (the path for requests the backend declines): no registration.
        Assert.Equal(UblkFeatures.None, UblkDevice.RequestedFlags(Kernel617, options with { AutoBufferRegistration = false }, serving) & UblkFeatures.AutoBufReg);
        Assert.Equal(UblkFeatures.None, UblkDevice.RequestedFlags(Kernel617, options with { PreferUserCopy = false }, serving) & UblkFeatures.AutoBufReg);
        Assert.Equal(UblkFeatures.None, UblkDevice.RequestedFlags(Kernel617 & ~UblkFeatures.UserCopy, options, serving) & UblkFeatures.AutoBufReg);
    }

    [Theory]
    [InlineData(null, 1 << 20, UblkFeatures.UserCopy, 1 << 20)] // the backend's preference, buffers rented per request
    [InlineData(null, 1 << 20, UblkFeatures.None, UblkDeviceOptions.DefaultMaxIoBytes)] // per-tag buffers: no preference
    [InlineData(null, 0, UblkFeatures.UserCopy, UblkDeviceOptions.DefaultMaxIoBytes)] // no preference stated
    [InlineData(null, 1000, UblkFeatures.UserCopy, UblkDeviceOptions.DefaultMaxIoBytes)] // an invalid preference is ignored
    [InlineData(null, 0, UblkFeatures.UserCopy | UblkFeatures.AutoBufReg, UblkDeviceOptions.ZeroCopyMaxIoBytes)] // zero copy needs no buffer
    [InlineData(256 * 1024, 1 << 20, UblkFeatures.UserCopy, 256 * 1024)] // the options win
    [InlineData(256 * 1024, 0, UblkFeatures.UserCopy | UblkFeatures.AutoBufReg, 256 * 1024)] // also over zero copy
    public void RequestSizeIsTheOptionElseZeroCopysElseTheBackendsPreferenceWithUserCopy(int? option, int preferred, UblkFeatures flags, int expected)
    {
        var backend = new BlockBackendInfo(1 << 30, 4096, 4096, BlockBackendFeatures.None, PreferredMaxIoBytes: preferred);
        Assert.Equal(expected, new UblkDeviceOptions { MaxIoBytes = option }.EffectiveMaxIoBytes(backend, flags));
    }
}
