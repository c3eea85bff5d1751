using UblkCsi.Engine;
using UblkCsi.Engine.Backends;

namespace UblkCsi.UblkEngine.Tests.Backends;

public class MemoryBackendTests
{
    [Fact]
    public async Task UnwrittenRangesReadAsZerosAndCostNoMemory()
    {
        var backend = new MemoryBackend(1L << 30);
        var buffer = new byte[65536];
        buffer.AsSpan().Fill(0xFF);
        await backend.ReadAsync(123 * 4096, buffer);
        Assert.All(buffer, b => Assert.Equal(0, b));
        Assert.Equal(0, backend.AllocatedBytes);
    }

    [Fact]
    public async Task WritesAcrossPageBoundariesReadBack()
    {
        var backend = new MemoryBackend(1 << 20);
        var data = new byte[10_240];
        Random.Shared.NextBytes(data);
        await backend.WriteAsync(4096 - 512, data);
        var back = new byte[data.Length];
        await backend.ReadAsync(4096 - 512, back);
        Assert.Equal(data, back);
        Assert.Equal(4 * MemoryBackend.PageSize, backend.AllocatedBytes); // pages 0..3 touched
    }

    [Fact]
    public async Task DiscardFreesWholePagesAndZeroesPartialOnes()
    {
        var backend = new MemoryBackend(1 << 20);
        var ones = new byte[4 * 4096];
        ones.AsSpan().Fill(1);
        await backend.WriteAsync(0, ones);
        await backend.DiscardAsync(2048, 8192); // half of page 0, all of page 1, half of page 2
        Assert.Equal(3 * MemoryBackend.PageSize, backend.AllocatedBytes);

        var back = new byte[ones.Length];
        await backend.ReadAsync(0, back);
        Assert.All(back.AsSpan(0, 2048).ToArray(), b => Assert.Equal(1, b));
        Assert.All(back.AsSpan(2048, 8192).ToArray(), b => Assert.Equal(0, b));
        Assert.All(back.AsSpan(2048 + 8192).ToArray(), b => Assert.Equal(1, b));

        await backend.WriteZeroesAsync(0, ones.Length);
        Assert.Equal(0, backend.AllocatedBytes);
    }

    [Fact]
    public async Task OutOfRangeRequestsFailWithEinval()
    {
        var backend = new MemoryBackend(1 << 20);
        var e = await Assert.ThrowsAsync<BlockBackendException>(async () => await backend.WriteAsync((1 << 20) - 512, new byte[1024]));
        Assert.Equal(BlockBackendException.EINVAL, e.Errno);
        await Assert.ThrowsAsync<BlockBackendException>(async () => await backend.ReadAsync(-512, new byte[512]));
    }

    [Fact]
    public async Task ReadOnlyBackendsRefuseWrites()
    {
        var backend = new MemoryBackend(1 << 20, features: BlockBackendFeatures.ReadOnly);
        var e = await Assert.ThrowsAsync<BlockBackendException>(async () => await backend.WriteAsync(0, new byte[512]));
        Assert.Equal(BlockBackendException.EROFS, e.Errno);
    }

    [Fact]
    public void GeometryIsValidated()
    {
        Assert.Equal("sizeBytes", Assert.Throws<ArgumentOutOfRangeException>(() => new MemoryBackend(1000)).ParamName);
        Assert.Equal("logicalBlockSize", Assert.Throws<ArgumentOutOfRangeException>(() => new MemoryBackend(1 << 20, 768)).ParamName);
        Assert.Equal("physicalBlockSize", Assert.Throws<ArgumentOutOfRangeException>(() => new MemoryBackend(1 << 20, 4096, 512)).ParamName);
    }

    [Fact]
    public async Task ConcurrentWritersOfDisjointPagesAllLand()
    {
        var backend = new MemoryBackend(64L << 20);
        await Parallel.ForAsync(0, 8, async (writer, _) =>
        {
            var page = new byte[4096];
            for (var i = 0; i < 512; i++)
            {
                page.AsSpan().Fill((byte)(writer + 1));
                await backend.WriteAsync(((long)i * 8 + writer) * 4096, page);
            }
        });

        var back = new byte[4096];
        for (var n = 0; n < 8 * 512; n++)
        {
            await backend.ReadAsync((long)n * 4096, back);
            Assert.True(back.AsSpan().IndexOfAnyExcept((byte)(n % 8 + 1)) < 0, $"page {n} holds another writer's data");
        }

        Assert.Equal(8L * 512 * 4096, backend.AllocatedBytes);
    }
}
