using UblkCsi.Engine;
using UblkCsi.Engine.Backends;
using UblkCsi.Engine.Backends.Metering;
using UblkCsi.Engine.Backends.Qos;
using UblkCsi.Engine.IoUring;
using UblkCsi.UblkEngine.Tests.Device;

namespace UblkCsi.Engine.Tests.Backends;

/// <summary>The per-volume meter: what it counts, and that counting costs the hot path nothing.</summary>
public sealed class MeteringTests
{
    [Fact]
    public async Task CountsOperationsBytesLatencyAndErrorsByErrno()
    {
        var meter = new IoMeter();
        await using var backend = new MeteredBackend(new FailingAbove(new MemoryBackend(1 << 20), limit: 512 << 10), meter);
        var buffer = new byte[4096];

        await backend.WriteAsync(0, buffer);
        await backend.WriteAsync(4096, buffer, BlockWriteFlags.Fua);
        await backend.ReadAsync(0, buffer);
        await backend.FlushAsync();
        await backend.DiscardAsync(0, 4096);
        await backend.WriteZeroesAsync(0, 8192);
        await Assert.ThrowsAsync<BlockBackendException>(async () => await backend.ReadAsync(600 << 10, buffer));

        var snapshot = meter.Snapshot();
        Assert.Equal(2, snapshot[IoOperation.Write].Count);
        Assert.Equal(8192, snapshot[IoOperation.Write].Bytes);
        Assert.Equal(1, snapshot[IoOperation.Read].Count);
        Assert.Equal(4096, snapshot[IoOperation.Read].Bytes);
        Assert.Equal(1, snapshot[IoOperation.Flush].Count);
        Assert.Equal(1, snapshot[IoOperation.Discard].Count);
        Assert.Equal(1, snapshot[IoOperation.WriteZeroes].Count);
        Assert.Equal(2, snapshot[IoOperation.Write].LatencyBuckets.Sum());
        Assert.Equal(IoMeter.LatencyBucketBounds.Count + 1, snapshot[IoOperation.Write].LatencyBuckets.Count);
        Assert.Equal([new IoErrorCount(IoOperation.Read, BlockBackendException.ENOSPC, 1)], snapshot.Errors);
        Assert.Equal(0, snapshot.InFlight);
    }

    [Fact]
    public async Task RequestsStillRunningAreInFlightAndAsynchronousCompletionsAreCounted()
    {
        var meter = new IoMeter();
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var backend = new MeteredBackend(new GatedFlush(new MemoryBackend(1 << 20), gate.Task), meter);

        var flushes = Enumerable.Range(0, 3).Select(_ => backend.FlushAsync().AsTask()).ToArray();
        Assert.Equal(3, meter.Snapshot().InFlight);
        gate.SetResult();
        await Task.WhenAll(flushes);

        Assert.Equal(0, meter.Snapshot().InFlight);
        Assert.Equal(3, meter.Snapshot()[IoOperation.Flush].Count);
    }

    [Fact]
    public async Task MeteringSynchronousRequestsAllocatesNothing()
    {
        await using var backend = new MeteredBackend(new MemoryBackend(8 << 20), new IoMeter());
        var buffer = new byte[4096];
        // Every page the loop touches exists first: the memory backend allocates pages on first write.
        for (var i = 0; i < 2000; i++)
        {
            await backend.WriteAsync(i * 4096L, buffer);
            await backend.ReadAsync(i * 4096L, buffer);
        }

        Assert.Equal(0, AllocatedBySynchronousIo(backend, buffer));
    }

    /// <summary>Bytes this thread allocated for 20 000 writes and reads that complete synchronously, as the engine's queue thread issues them.</summary>
    private static long AllocatedBySynchronousIo(IBlockBackend backend, byte[] buffer)
    {
        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 20_000; i++)
        {
            var offset = i % 2000 * 4096L;
            var write = backend.WriteAsync(offset, buffer);
            write.GetAwaiter().GetResult();
            var read = backend.ReadAsync(offset, buffer);
            read.GetAwaiter().GetResult();
        }

        return GC.GetAllocatedBytesForCurrentThread() - before;
    }

    /// <summary>Reads beyond a limit fail with ENOSPC, as a full store would answer writes.</summary>
    private sealed class FailingAbove(IBlockBackend inner, long limit) : IBlockBackend
    {
        public BlockBackendInfo Info => inner.Info;

        public ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken = default) =>
            offset >= limit ? ValueTask.FromException(new BlockBackendException(BlockBackendException.ENOSPC, "full")) : inner.ReadAsync(offset, buffer, cancellationToken);

        public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, BlockWriteFlags flags = BlockWriteFlags.None, CancellationToken cancellationToken = default) =>
            inner.WriteAsync(offset, data, flags, cancellationToken);

        public ValueTask FlushAsync(CancellationToken cancellationToken = default) => inner.FlushAsync(cancellationToken);

        public ValueTask DiscardAsync(long offset, long length, CancellationToken cancellationToken = default) => inner.DiscardAsync(offset, length, cancellationToken);

        public ValueTask WriteZeroesAsync(long offset, long length, CancellationToken cancellationToken = default) => inner.WriteZeroesAsync(offset, length, cancellationToken);

        public ValueTask DisposeAsync() => inner.DisposeAsync();
    }

    /// <summary>Flushes complete when a gate opens, on another thread.</summary>
    private sealed class GatedFlush(IBlockBackend inner, Task gate) : IBlockBackend
    {
        public BlockBackendInfo Info => inner.Info;

        public ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken = default) => inner.ReadAsync(offset, buffer, cancellationToken);

        public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, BlockWriteFlags flags = BlockWriteFlags.None, CancellationToken cancellationToken = default) =>
            inner.WriteAsync(offset, data, flags, cancellationToken);

        public ValueTask FlushAsync(CancellationToken cancellationToken = default) => new(gate);

        public ValueTask DiscardAsync(long offset, long length, CancellationToken cancellationToken = default) => inner.DiscardAsync(offset, length, cancellationToken);

        public ValueTask WriteZeroesAsync(long offset, long length, CancellationToken cancellationToken = default) => inner.WriteZeroesAsync(offset, length, cancellationToken);

        public ValueTask DisposeAsync() => inner.DisposeAsync();
    }

    [Fact]
    public async Task ZeroCopyPassesThroughTheMeterAndAnUnlimitedQosStageAndIsMetered()
    {
        using var ring = Ring.Create(4);
        var buffer = new RegisteredBuffer(new QueueIo(ring, 4), 2, 8192);
        var meter = new IoMeter();
        var stub = new RegisteredBufferStub(serves: true);
        var backend = new MeteredBackend(new ThrottledBackend(stub, QosLimits.Unlimited), meter);

        Assert.True(backend.ServesRegisteredBuffers);
        Assert.True(backend.TryReadRegistered(0, buffer, default, out var read));
        await read;
        Assert.True(backend.TryWriteRegistered(8192, buffer, BlockWriteFlags.None, default, out var write));
        await write;

        Assert.Equal(["registered-read 0 slot 2 len 8192", "registered-write 8192 slot 2 len 8192"], stub.Calls);
        var snapshot = meter.Snapshot();
        Assert.Equal(8192, snapshot[IoOperation.Read].Bytes);
        Assert.Equal(8192, snapshot[IoOperation.Write].Bytes);
        Assert.Equal(0, snapshot.InFlight);
    }

    [Fact]
    public void ALimitedVolumeOrADecliningStoreTakesTheCopyPathAndLeavesNothingInFlight()
    {
        using var ring = Ring.Create(4);
        var buffer = new RegisteredBuffer(new QueueIo(ring, 4), 0, 4096);
        var meter = new IoMeter();
        var stub = new RegisteredBufferStub(serves: true);
        var limited = new MeteredBackend(new ThrottledBackend(stub, new QosLimits { MaxIops = 100 }), meter);

        Assert.False(limited.TryReadRegistered(0, buffer, default, out _));
        Assert.Empty(stub.Calls); // the limiter reserves once, on the copy path that follows

        var declining = new MeteredBackend(new RegisteredBufferStub(serves: true, accepts: false), meter);
        Assert.False(declining.TryReadRegistered(0, buffer, default, out _));
        Assert.Equal(0, meter.Snapshot().InFlight);
        Assert.Equal(0, meter.Snapshot()[IoOperation.Read].Count);
        Assert.False(new MeteredBackend(new MemoryBackend(1 << 20), meter).ServesRegisteredBuffers);
    }
}
