using UblkCsi.Engine;

namespace UblkCsi.UblkEngine.Tests.Device;

public class AdoptionMismatchTests
{
    private const BlockBackendFeatures Full =
        BlockBackendFeatures.VolatileCache | BlockBackendFeatures.Fua | BlockBackendFeatures.Discard | BlockBackendFeatures.WriteZeroes;

    private static readonly BlockBackendInfo Backend = new(64 << 20, 4096, 4096, Full);

    private static UblkDeviceParameters Announced(BlockBackendInfo info) => UblkDeviceParameters.ForBackend(info, 512 * 1024);

    [Fact]
    public void TheBackendTheDeviceWasAnnouncedForMayAdoptIt() =>
        Assert.Null(UblkDevice.AdoptionMismatch(Backend, Announced(Backend)));

    [Fact]
    public void AVolumeGrownWhileServedMayAdoptItsSmallerDevice() =>
        Assert.Null(UblkDevice.AdoptionMismatch(Backend with { SizeBytes = 128 << 20 }, Announced(Backend)));

    [Fact]
    public void DifferencesThatOnlyFailSingleRequestsDoNotBlockTheAdoption()
    {
        var other = new BlockBackendInfo(64 << 20, 512, 512, Full | BlockBackendFeatures.ReadOnly);
        Assert.Null(UblkDevice.AdoptionMismatch(other with { Features = BlockBackendFeatures.VolatileCache | BlockBackendFeatures.Fua }, Announced(Backend)));
    }

    [Fact]
    public void ASmallerBackendIsRefused() =>
        Assert.Contains("size is 67108864 bytes but the backend has only 33554432", UblkDevice.AdoptionMismatch(Backend with { SizeBytes = 32 << 20 }, Announced(Backend)));

    [Fact]
    public void ABackendThatCachesWritesIsRefusedForADeviceTheKernelNeverFlushes()
    {
        var device = Announced(Backend with { Features = BlockBackendFeatures.None });
        Assert.Contains("never flush", UblkDevice.AdoptionMismatch(Backend, device));
    }

    [Fact]
    public void ABackendThatIgnoresFuaIsRefusedForADeviceThatSendsIt() =>
        Assert.Contains("does not honour FUA", UblkDevice.AdoptionMismatch(Backend with { Features = Full & ~BlockBackendFeatures.Fua }, Announced(Backend)));
}
