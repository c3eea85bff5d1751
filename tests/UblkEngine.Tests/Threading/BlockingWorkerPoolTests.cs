using UblkCsi.Engine.Threading;

namespace UblkCsi.UblkEngine.Tests.Threading;

/// <summary>The dedicated blocking workers: own threads, bounded, allocation-free, independent of the .NET thread pool.</summary>
public sealed class BlockingWorkerPoolTests
{
    private static readonly BlockingCallAction RecordThread = static (target, _, _, _) =>
    {
        var seen = (List<(string? Name, bool PoolThread, bool Worker, bool Flusher)>)target;
        var entry = (Thread.CurrentThread.Name, Thread.CurrentThread.IsThreadPoolThread, BlockingWorkerPool.IsWorkerThread, IoThreads.IsIoFlusher());
        lock (seen)
        {
            seen.Add(entry);
        }
    };

    private static readonly BlockingCallAction Fail = static (_, offset, _, _) => throw new IOException($"failed at {offset}");

    private static readonly BlockingCallAction Block = static (target, _, _, _) => ((ManualResetEventSlim)target).Wait();

    private static readonly BlockingCallAction Nothing = static (_, _, _, _) => { };

    [Fact]
    public async Task CallsRunOnTheNamedDedicatedThreadsNeverTheThreadPool()
    {
        using var pool = new BlockingWorkerPool(2, name: "test-blk");
        var seen = new List<(string? Name, bool PoolThread, bool Worker, bool Flusher)>();
        for (var i = 0; i < 50; i++)
        {
            await pool.Run(RecordThread, seen, i, 0, default);
        }

        Assert.Equal(50, seen.Count);
        Assert.All(seen, s =>
        {
            Assert.StartsWith("test-blk-", s.Name);
            Assert.False(s.PoolThread);
            Assert.True(s.Worker);
            Assert.Equal(IoThreads.HasCapSysResource(), s.Flusher);
        });
        Assert.Equal(50, pool.CompletedCalls);
    }

    [Fact]
    public async Task AFailingCallFaultsItsTaskAndTheWorkerCarriesOn()
    {
        using var pool = new BlockingWorkerPool(1);
        var e = await Assert.ThrowsAsync<IOException>(async () => await pool.Run(Fail, pool, 42, 0, default));
        Assert.Equal("failed at 42", e.Message);
        await pool.Run(Nothing, pool, 0, 0, default);
    }

    [Fact]
    public async Task ACallConsumedTwiceThrowsAndIsRecycledOnce()
    {
        using var pool = new BlockingWorkerPool(2);
        var done = pool.Run(Nothing, pool, 0, 0, default);
        await done;

        // GetResult itself, as a second consumer would call it (an await would stop at the stale status).
        Assert.Throws<InvalidOperationException>(() => done.GetAwaiter().GetResult());

        // Recycled once, the call object serves one of the next two calls; recycled twice, both would
        // share it and the first one's token would be stale.
        using var gate = new ManualResetEventSlim();
        var first = pool.Run(Block, gate, 0, 0, default);
        var second = pool.Run(Block, gate, 0, 0, default);
        Assert.False(first.IsCompleted);
        Assert.False(second.IsCompleted);
        gate.Set();
        await first;
        await second;
    }

    [Fact]
    public async Task CallsCompleteWhileTheThreadPoolIsStarved()
    {
        // Every thread-pool thread the runtime has is parked; the workers do not need one.
        ThreadPool.GetMinThreads(out var minWorkers, out var minIo);
        ThreadPool.GetMaxThreads(out var maxWorkers, out _);
        using var pool = new BlockingWorkerPool(1);
        using var release = new ManualResetEventSlim();
        var parked = Enumerable.Range(0, ThreadPool.ThreadCount + 4)
            .Select(_ => Task.Factory.StartNew(release.Wait, CancellationToken.None, TaskCreationOptions.None, TaskScheduler.Default))
            .ToArray();
        try
        {
            using var done = new ManualResetEventSlim();
            var task = pool.Run(Nothing, pool, 0, 0, default);
            task.GetAwaiter().UnsafeOnCompleted(done.Set); // continuation runs on the worker, like the engine's
            Assert.True(done.Wait(TimeSpan.FromSeconds(2)), "a blocking call waited for the thread pool");
        }
        finally
        {
            release.Set();
            await Task.WhenAll(parked);
            ThreadPool.SetMinThreads(minWorkers, minIo);
            _ = maxWorkers;
        }
    }

    [Fact]
    public async Task ASubmitterBeyondTheCapacityWaitsForRoom()
    {
        using var pool = new BlockingWorkerPool(1, capacity: 2);
        using var gate = new ManualResetEventSlim();
        var first = pool.Run(Block, gate, 0, 0, default); // taken by the worker
        var queued1 = pool.Run(Nothing, gate, 0, 0, default);
        var queued2 = pool.Run(Nothing, gate, 0, 0, default);
        var third = Task.Run(() => pool.Run(Nothing, gate, 0, 0, default).AsTask());
        Assert.NotSame(third, await Task.WhenAny(third, Task.Delay(200)));
        gate.Set();
        await third.WaitAsync(TimeSpan.FromSeconds(5));
        await first;
        await queued1;
        await queued2;
    }

    /// <summary>Blocks on a pending ValueTask the way a synchronous caller would.</summary>
    private static void WaitFor(ValueTask task)
    {
        var awaiter = task.GetAwaiter();
        var spin = default(SpinWait);
        while (!awaiter.IsCompleted)
        {
            spin.SpinOnce();
        }

        awaiter.GetResult();
    }

    [Fact]
    public void SubmittingDoesNotAllocateOnceWarm()
    {
        using var pool = new BlockingWorkerPool(2);
        for (var i = 0; i < 100; i++)
        {
            WaitFor(pool.Run(Nothing, pool, 0, 0, default));
        }

        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 2000; i++)
        {
            WaitFor(pool.Run(Nothing, pool, 0, 0, default));
        }

        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.True(allocated < 1024, $"{allocated} bytes allocated over 2000 calls");
    }
}
