using UblkCsi.Engine.Threading;

namespace UblkCsi.UblkEngine.Tests.Threading;

/// <summary>
/// A queue's ring is closed only once its thread is gone in the kernel; these pin down the wait that
/// decides it, against real threads.
/// </summary>
public sealed class KernelThreadsTests
{
    [Fact]
    public async Task AThreadThatReturnedIsReportedGoneOnceTheKernelReapedIt()
    {
        var threadId = 0;
        var thread = new Thread(() => threadId = KernelThreads.CurrentId());
        thread.Start();
        thread.Join();

        Assert.NotEqual(Environment.ProcessId, threadId);
        Assert.True(await KernelThreads.WaitForExitAsync(threadId, TimeSpan.FromSeconds(10)));
        Assert.False(KernelThreads.Exists(threadId));
    }

    [Fact]
    public async Task ALiveThreadIsWaitedForUntilTheLimitThenReportedLingering()
    {
        using var release = new ManualResetEventSlim();
        using var started = new ManualResetEventSlim();
        var threadId = 0;
        var thread = new Thread(() =>
        {
            threadId = KernelThreads.CurrentId();
            started.Set();
            release.Wait();
        });
        thread.Start();
        started.Wait();

        Assert.True(KernelThreads.Exists(threadId));
        var waited = System.Diagnostics.Stopwatch.StartNew();
        Assert.False(await KernelThreads.WaitForExitAsync(threadId, TimeSpan.FromMilliseconds(200)));
        Assert.True(waited.ElapsedMilliseconds >= 200);

        release.Set();
        Assert.True(await KernelThreads.WaitForExitAsync(threadId, TimeSpan.FromSeconds(10)));
    }
}
