using UblkCsi.Engine;
using UblkCsi.Engine.Abi;
using UblkCsi.Engine.Backends;
using UblkCsi.Engine.IoUring;

namespace UblkCsi.UblkEngine.Tests.Device;

public class RequestDispatcherTests
{
    private const int EIO = 5;

    [Fact]
    public async Task WriteTakesTheRequestDataFromTheUserCopyWindowAndReadDeliversItBack()
    {
        var backend = new MemoryBackend(1 << 20);
        using var harness = new DispatcherHarness(backend);
        var payload = new byte[8192];
        Random.Shared.NextBytes(payload);

        harness.OfferWriteData(tag: 3, payload);
        harness.Dispatch(3, UblkIoOp.Write, offset: 65536, payload.Length);
        Assert.Equal((3, payload.Length, 0UL), harness.Commits[0]);

        harness.Dispatch(5, UblkIoOp.Read, offset: 65536, payload.Length);
        Assert.Equal((5, payload.Length, 0UL), harness.Commits[1]);
        Assert.Equal(payload, harness.DeliveredReadData(5, payload.Length));

        var stored = new byte[payload.Length];
        await backend.ReadAsync(65536, stored);
        Assert.Equal(payload, stored);
    }

    [Fact]
    public void FuaFlushDiscardAndWriteZeroesReachTheBackend()
    {
        var counting = new CountingBackend(new MemoryBackend(1 << 20));
        using var harness = new DispatcherHarness(counting);
        harness.OfferWriteData(0, new byte[4096]);
        harness.Dispatch(0, UblkIoOp.Write, 0, 4096, UblkAbi.IoFlagFua);
        // A flush's start sector is not a position; any value must be accepted.
        harness.Dispatch(1, UblkIoOp.Flush, offset: long.MaxValue & ~511L, 0);
        harness.Dispatch(2, UblkIoOp.Discard, 4096, 8192);
        harness.Dispatch(3, UblkIoOp.WriteZeroes, 16384, 4096);

        Assert.Equal(new BackendOperationCounts(0, 1, 1, 1, 1, 1, 0, 4096), counting.Counts);
        Assert.Equal([4096, 0, 0, 0], harness.Commits.Select(c => c.Result));
    }

    [Fact]
    public void BackendErrnoBecomesTheNegativeCommitResult()
    {
        using var harness = new DispatcherHarness(new FailingBackend(new BlockBackendException(BlockBackendException.ENOSPC, "full")));
        harness.OfferWriteData(0, new byte[512]);
        harness.Dispatch(0, UblkIoOp.Write, 0, 512);
        harness.Dispatch(1, UblkIoOp.Read, 0, 512); // throws synchronously instead of returning a faulted task
        Assert.Equal([-28, -28], harness.Commits.Select(c => c.Result));
        Assert.Equal(2, harness.Dispatcher.BackendErrors);
    }

    [Fact]
    public void OtherExceptionsAndOutOfRangeErrnosBecomeEio()
    {
        using var harness = new DispatcherHarness(new FailingBackend(new InvalidOperationException("bug")));
        harness.Dispatch(0, UblkIoOp.Flush, 0, 0);
        using var harness2 = new DispatcherHarness(new FailingBackend(new BlockBackendException(70000, "nonsense errno")));
        harness2.Dispatch(0, UblkIoOp.Flush, 0, 0);
        Assert.Equal(-EIO, harness.Commits[0].Result);
        Assert.Equal(-EIO, harness2.Commits[0].Result);
    }

    [Fact]
    public void RequestsOutsideTheDeviceAndUnknownOperationsAreRefused()
    {
        var counting = new CountingBackend(new NullBackend(1 << 20));
        using var harness = new DispatcherHarness(counting);
        harness.Dispatch(0, UblkIoOp.Read, (1 << 20) - 512, 1024);
        harness.Dispatch(1, UblkIoOp.Write, 0, 512 * 1024 * 2); // larger than the negotiated maximum
        harness.Dispatch(2, (UblkIoOp)10, 0, 512); // a zone operation
        Assert.Equal([-EIO, -EIO, -95], harness.Commits.Select(c => c.Result));
        Assert.Equal(default, counting.Counts);
    }

    [Fact]
    public void AfterALiveGrowTheNewRangeIsServedAndNothingShrinks()
    {
        // The backend already serves 4 MiB (it grows first); the device still says 2.
        var counting = new CountingBackend(new NullBackend(4 << 20));
        using var harness = new DispatcherHarness(counting, deviceBytes: 2 << 20);
        harness.Capacity.GrowTo(1 << 20); // smaller: ignored
        harness.Dispatch(0, UblkIoOp.Read, (2 << 20) - 4096, 4096);
        harness.Dispatch(1, UblkIoOp.Read, 2 << 20, 4096);

        harness.Capacity.GrowTo(4 << 20);
        harness.Dispatch(2, UblkIoOp.Read, 2 << 20, 4096);

        Assert.Equal([4096, -EIO, 4096], harness.Commits.Select(c => c.Result));
    }

    [Fact]
    public void AsyncCompletionsFromOtherThreadsAreCommittedByTheQueueThread()
    {
        var backend = new ManualBackend(1 << 20);
        using var harness = new DispatcherHarness(backend);
        harness.Dispatch(0, UblkIoOp.Read, 0, 4096);
        harness.Dispatch(1, UblkIoOp.Flush, 0, 0);
        harness.Dispatch(2, UblkIoOp.Read, 4096, 4096);
        Assert.Empty(harness.Commits);
        Assert.Equal(3, harness.Dispatcher.InFlight);

        backend.CompleteNext(fill: 0xAB);
        backend.CompleteNext();
        backend.CompleteNext(error: new BlockBackendException(BlockBackendException.EROFS, "read-only"));
        harness.DrainUntil(3);

        Assert.Equal(0, harness.Dispatcher.InFlight);
        var byTag = harness.Commits.ToDictionary(c => c.Tag, c => c.Result);
        Assert.Equal(4096, byTag[0]);
        Assert.Equal(0, byTag[1]);
        Assert.Equal(-30, byTag[2]);
        Assert.All(harness.DeliveredReadData(0, 4096), b => Assert.Equal(0xAB, b));
        Assert.Equal(0, harness.Pool.OutstandingBytes);
    }

    [Fact]
    public void AbandoningFailsHungRequestsAndLaterOnesWithEio()
    {
        var backend = new ManualBackend(1 << 20);
        using var harness = new DispatcherHarness(backend);
        harness.Dispatch(0, UblkIoOp.Read, 0, 4096);
        harness.Dispatch(1, UblkIoOp.Flush, 0, 0);

        harness.Dispatcher.AbandonInFlight();
        Assert.Equal(0, harness.Dispatcher.InFlight);
        Assert.Equal([-EIO, -EIO], harness.Commits.Select(c => c.Result).Order());
        Assert.True(backend.LastToken.IsCancellationRequested, "backends are told to give up");

        harness.Dispatch(2, UblkIoOp.Read, 0, 512);
        Assert.Equal(-EIO, harness.Commits[^1].Result);

        // The late completions are swallowed: no second commit for those tags, buffers go back.
        backend.CompleteNext(fill: 1);
        backend.CompleteNext();
        WaitForBuffersBack(harness);
        Assert.Equal(0, harness.Dispatcher.DrainCompletions());
        Assert.Equal(3, harness.Commits.Count);
    }

    [Fact]
    public void AHandoverThatGivesUpWaitingLeavesTheRequestsForTheNextServer()
    {
        var backend = new ManualBackend(1 << 20);
        using var harness = new DispatcherHarness(backend);
        harness.Dispatch(0, UblkIoOp.Read, 0, 4096);
        harness.Dispatch(1, UblkIoOp.Flush, 0, 0);
        Assert.Equal(2, harness.Dispatcher.InFlight);

        harness.Dispatcher.AbandonInFlight(leaveForNextServer: true);

        // Nothing committed: the kernel requeues both when the queue's ring goes, instead of failing them.
        Assert.Equal(0, harness.Dispatcher.InFlight);
        Assert.Empty(harness.Commits);
        Assert.True(backend.LastToken.IsCancellationRequested, "backends are told to give up");
        backend.CompleteNext();
        backend.CompleteNext();
        WaitForBuffersBack(harness);
        Assert.Equal(0, harness.Dispatcher.DrainCompletions());
        Assert.Empty(harness.Commits);
    }

    /// <summary>Waits for late backend completions to free their buffers (their continuations run on the thread pool).</summary>
    private static void WaitForBuffersBack(DispatcherHarness harness)
    {
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (harness.Pool.OutstandingBytes != 0 && DateTime.UtcNow < deadline)
        {
            Thread.Sleep(5);
        }

        Assert.Equal(0, harness.Pool.OutstandingBytes);
    }

    [Fact]
    public void WithoutUserCopyEachTagHasItsOwnRegisteredBuffer()
    {
        var backend = new MemoryBackend(1 << 20);
        using var harness = new DispatcherHarness(backend, depth: 4, maxIoBytes: 64 * 1024, userCopy: false);
        var addresses = Enumerable.Range(0, 4).Select(harness.Dispatcher.RegisteredBufferAddress).ToArray();
        Assert.All(addresses, a => Assert.True(a != 0 && a % 4096 == 0));
        Assert.Equal(4, addresses.Distinct().Count());

        harness.Dispatch(2, UblkIoOp.Read, 0, 4096);
        Assert.Equal((2, 4096, addresses[2]), harness.Commits[0]);
        Assert.Equal(0, harness.Pool.OutstandingBytes);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void ABufferTheBackendRetiredIsNeverUsedAgain(bool userCopy)
    {
        using var harness = new DispatcherHarness(new RetiringBackend(1 << 20), depth: 2, maxIoBytes: 64 * 1024, userCopy: userCopy);
        var registered = harness.Dispatcher.RegisteredBufferAddress(1);
        harness.OfferWriteData(1, new byte[4096]);
        harness.Dispatch(1, UblkIoOp.Write, 0, 4096);
        Assert.Equal(4096, harness.Commits[0].Result);
        if (userCopy)
        {
            // Freed, not kept for the next request.
            Assert.Equal(1, harness.Pool.RetiredBuffers);
            Assert.Equal(0, harness.Pool.RetainedBytes);
            Assert.Equal(0, harness.Pool.OutstandingBytes);
            return;
        }

        // The tag's own buffer is replaced, and the commit already names the new one.
        Assert.NotEqual(registered, harness.Commits[0].Buffer);
        Assert.Equal(harness.Dispatcher.RegisteredBufferAddress(1), harness.Commits[0].Buffer);
        harness.Dispatch(1, UblkIoOp.Read, 0, 4096);
        Assert.Equal((1, 4096, harness.Commits[0].Buffer), harness.Commits[1]);
    }

    [Fact]
    public void TheHotPathDoesNotAllocate()
    {
        using var harness = new DispatcherHarness(new NullBackend(64L << 20), depth: 32);
        var payload = new byte[65536];
        for (var tag = 0; tag < 32; tag++)
        {
            harness.OfferWriteData(tag, payload);
        }

        void Round(int i)
        {
            var tag = i & 31;
            var offset = (long)(i % 1000) * 65536;
            switch (i % 4)
            {
                case 0: harness.Dispatch(tag, UblkIoOp.Read, offset, 4096 << (i % 5)); break;
                case 1: harness.Dispatch(tag, UblkIoOp.Write, offset, 65536, (i & 8) != 0 ? UblkAbi.IoFlagFua : 0); break;
                case 2: harness.Dispatch(tag, UblkIoOp.Flush, 0, 0); break;
                default: harness.Dispatch(tag, UblkIoOp.Discard, offset, 65536); break;
            }
        }

        for (var i = 0; i < 1000; i++)
        {
            Round(i); // warm-up: first rentals of each buffer size class
        }

        harness.Commits.Clear();
        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 20_000; i++)
        {
            Round(i);
        }

        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(20_000, harness.Commits.Count);
        Assert.DoesNotContain(harness.Commits, c => c.Result < 0);
        // Under one byte per request: any object allocated per request (24 bytes at least) would
        // show as 480 000 or more. Not zero: once, on a loaded host, the runtime itself allocated
        // 7 616 bytes on this thread during the loop (a one-off; the warm loop allocates nothing).
        Assert.True(allocated < 20_000, $"{allocated} bytes allocated over 20 000 dispatched requests");
    }

    [Fact]
    public void UnderAutoBufRegTheBackendServesTheRegisteredPagesAndNothingIsCopied()
    {
        using var ring = Ring.Create(4);
        var backend = new RegisteredBufferStub(serves: true);
        using var harness = new DispatcherHarness(backend, registeredRing: new QueueIo(ring, 4));
        harness.OfferWriteData(3, new byte[8192]);

        harness.Dispatch(3, UblkIoOp.Read, offset: 8192, 8192);
        harness.Dispatch(4, UblkIoOp.Write, offset: 0, 4096);

        // The slot is the tag: the driver registered the request's pages there.
        Assert.Equal(["registered-read 8192 slot 3 len 8192", "registered-write 0 slot 4 len 4096"], backend.Calls);
        Assert.Equal([(3, 8192, 0UL), (4, 4096, 0UL)], harness.Commits);
        Assert.All(harness.DeliveredReadData(3, 8192), b => Assert.Equal(0, b)); // no user copy for the read
    }

    [Fact]
    public void RequestsTheBackendDeclinesOrTheKernelCouldNotRegisterAreCopied()
    {
        using var ring = Ring.Create(4);
        var backend = new RegisteredBufferStub(serves: true, accepts: false);
        using var harness = new DispatcherHarness(backend, registeredRing: new QueueIo(ring, 4));
        harness.OfferWriteData(2, new byte[4096]);

        harness.Dispatch(1, UblkIoOp.Read, offset: 0, 4096);
        harness.Dispatch(2, UblkIoOp.Write, offset: 4096, 4096);
        // UBLK_IO_F_NEED_REG_BUF: the FALLBACK delivery, nothing registered at the slot.
        harness.Dispatch(5, UblkIoOp.Read, offset: 0, 4096, UblkAbi.IoFlagNeedRegBuf);

        Assert.Equal(
            ["registered-read 0 slot 1 len 4096", "copy-read 0 len 4096", "registered-write 4096 slot 2 len 4096", "copy-write 4096 len 4096", "copy-read 0 len 4096"],
            backend.Calls);
        Assert.All(harness.Commits, c => Assert.Equal(4096, c.Result));
        Assert.All(harness.DeliveredReadData(1, 4096), b => Assert.Equal(0x5A, b));
        Assert.All(harness.DeliveredReadData(5, 4096), b => Assert.Equal(0x5A, b));
    }

    [Fact]
    public void WithoutAutoBufRegOrABackendThatServesItEverythingIsCopied()
    {
        using var ring = Ring.Create(4);
        var notServing = new RegisteredBufferStub(serves: false);
        using (var harness = new DispatcherHarness(notServing, registeredRing: new QueueIo(ring, 4)))
        {
            harness.Dispatch(0, UblkIoOp.Read, offset: 0, 4096);
        }

        var serving = new RegisteredBufferStub(serves: true);
        using (var harness = new DispatcherHarness(serving))
        {
            harness.Dispatch(0, UblkIoOp.Read, offset: 0, 4096); // no registered ring: a 6.12 device
        }

        Assert.Equal(["copy-read 0 len 4096"], notServing.Calls);
        Assert.Equal(["copy-read 0 len 4096"], serving.Calls);
    }

    [Fact]
    public void AZeroCopyRequestTheStoreRejectsAsMisalignedIsServedAgainByCopy()
    {
        using var ring = Ring.Create(4);
        var backend = new RegisteredBufferStub(serves: true, registeredErrno: 22); // EINVAL: O_DIRECT and unaligned pages
        using var harness = new DispatcherHarness(backend, registeredRing: new QueueIo(ring, 4));
        harness.OfferWriteData(2, new byte[4096]);

        harness.Dispatch(1, UblkIoOp.Read, offset: 0, 4096);
        harness.Dispatch(2, UblkIoOp.Write, offset: 4096, 4096);

        Assert.Equal(
            ["registered-read 0 slot 1 len 4096", "copy-read 0 len 4096", "registered-write 4096 slot 2 len 4096", "copy-write 4096 len 4096"],
            backend.Calls);
        Assert.Equal([(1, 4096, 0UL), (2, 4096, 0UL)], harness.Commits);
        Assert.All(harness.DeliveredReadData(1, 4096), b => Assert.Equal(0x5A, b));
        Assert.Equal(0, harness.Dispatcher.BackendErrors);
    }
}
