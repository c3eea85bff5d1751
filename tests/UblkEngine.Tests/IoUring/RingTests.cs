using System.Runtime.InteropServices;
using UblkCsi.Engine.IoUring;

namespace UblkCsi.UblkEngine.Tests.IoUring;

/// <summary>The raw io_uring layer against this host's kernel.</summary>
public sealed unsafe class RingTests : IDisposable
{
    private readonly string _path = Path.Combine(Path.GetTempPath(), $"ring-test-{Guid.NewGuid():N}");

    public void Dispose() => File.Delete(_path);

    [Fact]
    public void NopCompletesWithItsUserData()
    {
        using var ring = Ring.Create(8);
        ring.GetSqe()->PrepareNop(0xDEADBEEF);
        Assert.Equal(1, ring.SubmitAndWait(1));
        Assert.True(ring.TryGetCompletion(out var cqe));
        Assert.Equal(0xDEADBEEFUL, cqe.UserData);
        Assert.Equal(0, cqe.Result);
        Assert.False(ring.TryGetCompletion(out _));
    }

    [Fact]
    public void SetupReportsSizesAndMapsBothRings()
    {
        using var ring = Ring.Create(5, IoUringSetupFlags.None, cqEntries: 64);
        Assert.Equal(8u, ring.SqEntries); // rounded up to a power of two
        Assert.Equal(64u, ring.CqEntries);
        Assert.True((ring.SetupFlags & IoUringSetupFlags.CqSize) != 0);
    }

    [Fact]
    public void WriteReadAndFsyncATempFile()
    {
        using var file = File.Open(_path, FileMode.CreateNew, FileAccess.ReadWrite);
        var fd = (int)file.SafeFileHandle.DangerousGetHandle();
        using var ring = Ring.Create(8);
        var data = (byte*)NativeMemory.AlignedAlloc(8192, 4096);
        var back = (byte*)NativeMemory.AlignedAlloc(8192, 4096);
        try
        {
            new Span<byte>(data, 8192).Fill(0x5A);
            data[0] = 1;
            data[8191] = 2;
            ring.GetSqe()->PrepareWrite(fd, data, 8192, 4096, 1);
            Assert.Equal(8192, ring.WaitCompletion().Result);

            ring.GetSqe()->PrepareFsync(fd, dataOnly: false, 2);
            var fsync = ring.WaitCompletion();
            Assert.Equal(2UL, fsync.UserData);
            Assert.Equal(0, fsync.Result);

            ring.GetSqe()->PrepareRead(fd, back, 8192, 4096, 3);
            var read = ring.WaitCompletion();
            Assert.Equal(3UL, read.UserData);
            Assert.Equal(8192, read.Result);
            Assert.True(new Span<byte>(data, 8192).SequenceEqual(new Span<byte>(back, 8192)));
            Assert.Equal(4096 + 8192, new FileInfo(_path).Length);
        }
        finally
        {
            NativeMemory.AlignedFree(data);
            NativeMemory.AlignedFree(back);
        }
    }

    [Fact]
    public void ReadPastEndOfFileIsShort()
    {
        File.WriteAllBytes(_path, new byte[100]);
        using var file = File.OpenHandle(_path);
        using var ring = Ring.Create(4);
        var buffer = stackalloc byte[4096];
        ring.GetSqe()->PrepareRead((int)file.DangerousGetHandle(), buffer, 4096, 0, 9);
        Assert.Equal(100, ring.WaitCompletion().Result);
    }

    [Fact]
    public void ErrorsArriveAsNegativeErrnoInTheCqe()
    {
        using var ring = Ring.Create(4);
        var buffer = stackalloc byte[16];
        ring.GetSqe()->PrepareRead(-1, buffer, 16, 0, 7);
        Assert.Equal(-9, ring.WaitCompletion().Result); // EBADF
    }

    [Fact]
    public void TryGetSqeReturnsNullWhenTheRingIsFullAndGetSqeSubmitsToMakeRoom()
    {
        using var ring = Ring.Create(4, IoUringSetupFlags.None, cqEntries: 64);
        for (var i = 0; i < 4; i++)
        {
            var sqe = ring.TryGetSqe();
            Assert.True(sqe != null);
            sqe->PrepareNop((ulong)i);
        }

        Assert.True(ring.TryGetSqe() == null);
        Assert.Equal(4u, ring.PendingSubmissions);

        // GetSqe flushes the four pending entries to make room for a fifth.
        ring.GetSqe()->PrepareNop(4);
        Assert.Equal(1u, ring.PendingSubmissions);
        ring.SubmitAndWait(5);
        var seen = new HashSet<ulong>();
        while (ring.TryGetCompletion(out var cqe))
        {
            Assert.True(seen.Add(cqe.UserData));
        }

        Assert.Equal(new ulong[] { 0, 1, 2, 3, 4 }, seen.Order());
    }

    [Fact]
    public void ManyOperationsInFlightThroughASmallRing()
    {
        const int Total = 10_000;
        using var ring = Ring.Create(32, IoUringSetupFlags.None, cqEntries: 64);
        var completed = new bool[Total];
        int submitted = 0, reaped = 0;
        while (reaped < Total)
        {
            // Keep at most the CQ size outstanding so no completion is ever dropped.
            while (submitted < Total && submitted - reaped < 64)
            {
                var sqe = ring.TryGetSqe();
                if (sqe == null)
                {
                    break;
                }

                sqe->PrepareNop((ulong)submitted++);
            }

            ring.SubmitAndWait(1);
            while (ring.TryGetCompletion(out var cqe))
            {
                Assert.False(completed[cqe.UserData]);
                completed[cqe.UserData] = true;
                reaped++;
            }
        }

        Assert.All(completed, Assert.True);
    }

    [Fact]
    public void SubmittingAndReapingDoesNotAllocate()
    {
        using var ring = Ring.Create(16);
        for (var i = 0; i < 100; i++)
        {
            ring.GetSqe()->PrepareNop(1);
            ring.WaitCompletion();
        }

        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 10_000; i++)
        {
            ring.GetSqe()->PrepareNop((ulong)i);
            ring.GetSqe()->PrepareNop((ulong)i);
            ring.SubmitAndWait(2);
            while (ring.TryGetCompletion(out _))
            {
            }
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    [Fact]
    public void PreferredFlagsAreUsedWhenTheKernelAcceptsThem()
    {
        using var ring = Ring.CreateWithFallback(8, IoUringSetupFlags.None, IoUringSetupFlags.CoopTaskRun | IoUringSetupFlags.SingleIssuer);
        ring.GetSqe()->PrepareNop(1);
        Assert.Equal(0, ring.WaitCompletion().Result);
    }

    [Fact]
    public void ADeferredTaskRunRingPostsFileCompletionsAndWakeUpsWhileItsOwnerWaits()
    {
        // The queue rings' flags: with DEFER_TASKRUN a completion that needs task work (a file
        // read handed to an io-wq worker, the eventfd read another thread completes) is posted only
        // when the owner waits with GETEVENTS, which SubmitAndWait(1) does.
        using var ring = Ring.CreateWithFallback(8, IoUringSetupFlags.None, IoUringSetupFlags.CoopTaskRun | IoUringSetupFlags.SingleIssuer | IoUringSetupFlags.DeferTaskRun, cqEntries: 16);
        Assert.True((ring.SetupFlags & IoUringSetupFlags.DeferTaskRun) != 0, "this host's kernel (6.1+) must take DEFER_TASKRUN");
        using var file = File.Open(_path, FileMode.CreateNew, FileAccess.ReadWrite);
        var fd = (int)file.SafeFileHandle.DangerousGetHandle();
        var buffer = (byte*)NativeMemory.AlignedAlloc(4096, 4096);
        using var waker = new EventFdWaker();
        try
        {
            new Span<byte>(buffer, 4096).Fill(0x3C);
            ring.GetSqe()->PrepareWrite(fd, buffer, 4096, 0, 1);
            Assert.Equal(4096, ring.WaitCompletion().Result);
            new Span<byte>(buffer, 4096).Clear();
            ring.GetSqe()->PrepareRead(fd, buffer, 4096, 0, 2);
            Assert.Equal(4096, ring.WaitCompletion().Result);
            Assert.True(new Span<byte>(buffer, 4096).IndexOfAnyExcept((byte)0x3C) < 0, "the read must return what was written");

            waker.Arm(ring, 3);
            ring.Submit();
            var signaller = new Thread(() =>
            {
                Thread.Sleep(50);
                waker.Signal();
            });
            signaller.Start();
            var wake = ring.WaitCompletion();
            signaller.Join();
            Assert.Equal(3UL, wake.UserData);
            Assert.Equal(8, wake.Result);
        }
        finally
        {
            NativeMemory.AlignedFree(buffer);
        }
    }

    [Fact]
    public void Sqe128RingsHandOutZeroed128ByteEntries()
    {
        using var ring = Ring.Create(2, IoUringSetupFlags.Sqe128);
        for (var round = 0; round < 4; round++)
        {
            var sqe = ring.GetSqe();
            var area = new Span<byte>(IoUringSqe.CommandArea(sqe), 80);
            Assert.True(area.IndexOfAnyExcept((byte)0) < 0, "the 80-byte command area must come zeroed");
            area.Fill(0xFF); // dirty it for the next round, then make it a valid NOP
            sqe->PrepareNop((ulong)round);
            sqe->Address3 = 0;
            new Span<byte>(IoUringSqe.CommandArea(sqe), 80).Clear();
            Assert.Equal((ulong)round, ring.WaitCompletion().UserData);
        }
    }

    [Fact]
    public void AnotherThreadWakesAThreadBlockedInTheRing()
    {
        using var ring = Ring.Create(4);
        using var waker = new EventFdWaker();
        const ulong WakeTag = 42;
        waker.Arm(ring, WakeTag);
        ring.Submit();

        for (var round = 0; round < 3; round++)
        {
            var signaller = new Thread(() =>
            {
                Thread.Sleep(50);
                waker.Signal();
                waker.Signal(); // collapsed into the same wake-up
            });
            signaller.Start();
            var started = System.Diagnostics.Stopwatch.StartNew();
            var cqe = ring.WaitCompletion();
            Assert.Equal(WakeTag, cqe.UserData);
            Assert.Equal(8, cqe.Result);
            Assert.True(started.ElapsedMilliseconds >= 30, "the wait must have blocked until the signal");
            signaller.Join();
            waker.Acknowledge(ring, WakeTag);
            ring.Submit();
        }

        // With the read re-armed and nothing signalled, the ring stays quiet.
        Assert.False(ring.TryGetCompletion(out _));
    }

    [Fact]
    public void ASparseBufferTableIsRegisteredOnce()
    {
        using var ring = Ring.Create(4);
        ring.RegisterSparseBuffers(128);

        // A ring has one buffer table: a second registration is refused (EBUSY), so the first took.
        var error = Assert.Throws<IoUringException>(() => ring.RegisterSparseBuffers(128));
        Assert.Equal(16, error.Errno);
        Assert.Contains("IORING_REGISTER_BUFFERS2", error.Message);
    }
}
