using UblkCsi.Engine;
using UblkCsi.Engine.Buffers;
using UblkCsi.Tests.Shared;
using UblkCsi.Engine.Threading;
using UblkCsi.Stores.Files;
using UblkCsi.Stores.Tests.Conformance;

namespace UblkCsi.Stores.Tests.Files;

/// <summary>
/// On an engine queue thread the file store's aligned direct I/O and its flushes go on the queue's
/// own io_uring, not to the blocking workers. The test thread plays the queue thread: it binds a
/// QueueIo over a real ring and reaps its completions as the queue loop does.
/// </summary>
public sealed class FileVolumeQueueRingTests : IDisposable
{
    private const int Bytes = 1 << 20;
    private readonly string _root = TempDirectory.Create("queue-ring");
    private readonly TestQueueThread _queue = new();

    public void Dispose()
    {
        _queue.Dispose();
        Directory.Delete(_root, recursive: true);
    }

    [Fact]
    public void AlignedDirectIoAndFlushesRunOnTheQueueRingNotTheWorkers()
    {
        var image = Path.Combine(_root, "v.img");
        using (var f = File.Create(image))
        {
            f.SetLength(Bytes);
        }

        using var workers = new BlockingWorkerPool(2);
        var volume = FileVolume.Open("v", image, Bytes, readOnly: false, workers, DirectIoMode.On);
        var data = IoBufferPool.Shared.Rent(65536);
        var back = IoBufferPool.Shared.Rent(65536);
        try
        {
            Random.Shared.NextBytes(data.Memory.Span[..65536]);
            var write = volume.WriteAsync(8192, data.Memory[..65536]);
            Assert.False(write.IsCompleted); // queued on the ring: nothing happens before the queue submits
            Reap(write);
            Reap(volume.FlushAsync());
            Reap(volume.ReadAsync(8192, back.Memory[..65536]));
            Assert.True(data.Memory.Span[..65536].SequenceEqual(back.Memory.Span[..65536]));
            Assert.Equal(0, workers.CompletedCalls);

            // A FUA write needs RWF_DSYNC and its fallback: still a worker's job.
            WaitForWorker(volume.WriteAsync(0, data.Memory[..4096], BlockWriteFlags.Fua));
            Assert.Equal(1, workers.CompletedCalls);
        }
        finally
        {
            IoBufferPool.Shared.Return(data);
            IoBufferPool.Shared.Return(back);
            Assert.True(volume.DisposeAsync().IsCompletedSuccessfully);
        }
    }

    [Fact]
    public void WithODirectTheImageIsServedFromRegisteredPagesExceptFuaAndUnalignedRequests()
    {
        var image = Path.Combine(_root, "zc.img");
        using (var f = File.Create(image))
        {
            f.SetLength(Bytes);
        }

        // Sparse, as under UBLK_F_AUTO_BUF_REG before the driver fills a slot: a fixed read of an
        // empty slot fails with EFAULT, which proves the volume issued READ_FIXED at that slot.
        _queue.Ring.RegisterSparseBuffers(8);
        var volume = FileVolume.Open("zc", image, Bytes, readOnly: false, directIo: DirectIoMode.On);
        var buffered = FileVolume.Open("zc", image, Bytes, readOnly: false, directIo: DirectIoMode.Off);
        try
        {
            Assert.True(volume.ServesRegisteredBuffers);
            Assert.False(buffered.ServesRegisteredBuffers);

            Assert.True(volume.TryReadRegistered(8192, new RegisteredBuffer(_queue.Io, 5, 4096), default, out var read));
            Assert.Equal(14, Assert.Throws<BlockBackendException>(() => Reap(read)).Errno);
            Assert.True(volume.TryWriteRegistered(8192, new RegisteredBuffer(_queue.Io, 5, 4096), BlockWriteFlags.None, default, out var write));
            Assert.Equal(14, Assert.Throws<BlockBackendException>(() => Reap(write)).Errno);

            // FUA (RWF_DSYNC on the workers), 512-byte-aligned requests and buffered volumes take the copy path.
            Assert.False(volume.TryWriteRegistered(0, new RegisteredBuffer(_queue.Io, 1, 4096), BlockWriteFlags.Fua, default, out _));
            Assert.False(volume.TryReadRegistered(512, new RegisteredBuffer(_queue.Io, 1, 4096), default, out _));
            Assert.False(buffered.TryReadRegistered(0, new RegisteredBuffer(_queue.Io, 1, 4096), default, out _));
        }
        finally
        {
            Assert.True(volume.DisposeAsync().IsCompletedSuccessfully);
            Assert.True(buffered.DisposeAsync().IsCompletedSuccessfully);
        }
    }

    private static void WaitForWorker(ValueTask pending)
    {
        Assert.True(SpinWait.SpinUntil(() => pending.IsCompleted, TimeSpan.FromSeconds(30)));
        pending.GetAwaiter().GetResult();
    }

    private void Reap(ValueTask pending) => _queue.Reap(pending);
}
