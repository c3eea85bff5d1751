using UblkCsi.Engine.Buffers;

namespace UblkCsi.UblkEngine.Tests.Buffers;

public class IoBufferPoolTests
{
    [Theory]
    [InlineData(1, 4096)]
    [InlineData(4096, 4096)]
    [InlineData(4097, 8192)]
    [InlineData(65536, 65536)]
    [InlineData(100_000, 131072)]
    [InlineData(32 << 20, 32 << 20)]
    public unsafe void RentRoundsUpToAPageAlignedPowerOfTwo(int requested, int capacity)
    {
        var pool = new IoBufferPool(1 << 20);
        var buffer = pool.Rent(requested);
        Assert.Equal(capacity, buffer.Capacity);
        Assert.Equal(0, (long)buffer.Pointer % 4096);
        Assert.Equal(capacity, buffer.Memory.Length);
        buffer.GetSpan().Fill(0x77); // the whole capacity is usable memory
        pool.Return(buffer);
    }

    [Fact]
    public void ReturnedBuffersAreReusedAndAccounted()
    {
        var pool = new IoBufferPool(1 << 20);
        var first = pool.Rent(8192);
        Assert.Equal(8192, pool.OutstandingBytes);
        pool.Return(first);
        Assert.Equal(0, pool.OutstandingBytes);
        Assert.Equal(8192, pool.RetainedBytes);
        Assert.Same(first, pool.Rent(5000));
        Assert.Equal(0, pool.RetainedBytes);
    }

    [Fact]
    public void BeyondTheRetentionLimitBuffersAreFreed()
    {
        var pool = new IoBufferPool(maxRetainedBytes: 16384);
        var buffers = Enumerable.Range(0, 8).Select(_ => pool.Rent(4096)).ToList();
        buffers.ForEach(pool.Return);
        Assert.Equal(16384, pool.RetainedBytes);
        pool.Trim();
        Assert.Equal(0, pool.RetainedBytes);
    }

    [Fact]
    public void ARetiredBufferIsFreedInsteadOfReused()
    {
        var pool = new IoBufferPool(1 << 20);
        var retired = pool.Rent(8192);
        retired.Retire();
        pool.Return(retired);
        Assert.Equal(1, pool.RetiredBuffers);
        Assert.Equal(0, pool.RetainedBytes);
        Assert.Equal(0, pool.OutstandingBytes);
        Assert.NotSame(retired, pool.Rent(8192));
    }

    [Fact]
    public void ForeignBuffersAndBadSizesAreRejected()
    {
        var pool = new IoBufferPool(1 << 20);
        var other = new IoBufferPool(1 << 20).Rent(16384);
        var mine = pool.Rent(4096);
        Assert.Throws<ArgumentOutOfRangeException>(() => pool.Rent(0));
        Assert.Throws<ArgumentOutOfRangeException>(() => pool.Rent(IoBufferPool.MaxBufferBytes + 1));
        pool.Return(mine);
        Assert.Throws<ArgumentException>(() => pool.Return(other));
        Assert.Equal(0, pool.OutstandingBytes);
    }

    [Fact]
    public void ConcurrentRentAndReturnKeepTheBooksBalanced()
    {
        var pool = new IoBufferPool(8L << 20);
        Parallel.For(0, 8, _ =>
        {
            for (var i = 0; i < 2000; i++)
            {
                var buffer = pool.Rent(4096 << (i % 4));
                buffer.GetSpan()[0] = 1;
                pool.Return(buffer);
            }
        });
        Assert.Equal(0, pool.OutstandingBytes);
        Assert.InRange(pool.RetainedBytes, 4096, 8L << 20);
    }
}
