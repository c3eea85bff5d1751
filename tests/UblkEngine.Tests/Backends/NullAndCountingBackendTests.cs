using UblkCsi.Engine;
using UblkCsi.Engine.Backends;

namespace UblkCsi.UblkEngine.Tests.Backends;

public class NullAndCountingBackendTests
{
    [Fact]
    public async Task NullBackendReadsZerosAndDeclaresEveryFeature()
    {
        var backend = new NullBackend(1 << 30, 4096);
        var buffer = new byte[8192];
        buffer.AsSpan().Fill(9);
        await backend.ReadAsync(4096, buffer);
        Assert.All(buffer, b => Assert.Equal(0, b));
        Assert.Equal(
            BlockBackendFeatures.VolatileCache | BlockBackendFeatures.Fua | BlockBackendFeatures.Discard | BlockBackendFeatures.WriteZeroes,
            backend.Info.Features);
        Assert.Equal(4096, backend.Info.LogicalBlockSize);
    }

    [Fact]
    public async Task CountingBackendCountsEveryOperationKind()
    {
        var counting = new CountingBackend(new MemoryBackend(1 << 20));
        await counting.WriteAsync(0, new byte[4096]);
        await counting.WriteAsync(4096, new byte[512], BlockWriteFlags.Fua);
        await counting.ReadAsync(0, new byte[1024]);
        await counting.FlushAsync();
        await counting.FlushAsync();
        await counting.DiscardAsync(0, 4096);
        await counting.WriteZeroesAsync(0, 512);
        Assert.Equal(new BackendOperationCounts(1, 2, 1, 2, 1, 1, 1024, 4608), counting.Counts);
        Assert.Contains("flushes=2", counting.Counts.ToString());
        Assert.Contains("fua_writes=1", counting.Counts.ToString());
        Assert.Equal(counting.Inner.Info, counting.Info);
    }
}
