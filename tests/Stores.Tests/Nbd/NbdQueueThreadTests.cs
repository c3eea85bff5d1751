using System.Diagnostics;
using UblkCsi.Engine;
using UblkCsi.Engine.Abi;
using UblkCsi.Engine.Device;
using UblkCsi.Engine.Buffers;
using UblkCsi.Stores.Nbd;
using UblkCsi.Tests.Shared;

namespace UblkCsi.Stores.Tests.Nbd;

/// <summary>
/// On an engine queue thread the nbd store sends a batch's requests itself at the batch end (one
/// non-blocking send, no wake-up of the sender thread). The test thread plays the queue thread: it
/// binds a QueueIo and ends batches as the queue loop does. Synchronous tests, so every call stays on
/// the thread the QueueIo is bound to.
/// </summary>
public sealed class NbdQueueThreadTests
{
    private const int MiB = 1 << 20;

    [NbdkitFact]
    public void RequestsOfABatchAreSentAtItsEndByTheQueueThread()
    {
        using var server = new SyncServer("memory", "size=4M");
        using var queue = new TestQueueThread();
        var data = IoBufferPool.Shared.Rent(4096);
        var back = IoBufferPool.Shared.Rent(4096);
        try
        {
            Random.Shared.NextBytes(data.Memory.Span[..4096]);
            var write = server.Volume.WriteAsync(8192, data.Memory[..4096]);
            // Nothing is sent before the batch ends: a sender-thread send would have been answered by now.
            Thread.Sleep(300);
            Assert.False(write.IsCompleted);
            queue.EndBatchAndWait(write);

            queue.EndBatchAndWait(server.Volume.ReadAsync(8192, back.Memory[..4096]));
            Assert.True(data.Memory.Span[..4096].SequenceEqual(back.Memory.Span[..4096]));
            var (onQueueThreads, onSenderThread) = server.Client.SentBatches();
            Assert.Equal(2, onQueueThreads);
            Assert.Equal(0, onSenderThread);
        }
        finally
        {
            IoBufferPool.Shared.Return(data);
            IoBufferPool.Shared.Return(back);
        }
    }

    [NbdkitFact]
    public void ABatchLargerThanTheSocketBufferIsFinishedByTheSenderThreadInOrder()
    {
        // 32 MiB of writes in one batch: far more than a socket takes without blocking, so the queue
        // thread's non-blocking send stops part-way and the sender thread sends the rest.
        const int writes = 32;
        using var server = new SyncServer("memory", $"size={writes}M");
        using var queue = new TestQueueThread();
        var buffers = new IoBuffer[writes];
        var pending = new ValueTask[writes];
        var back = IoBufferPool.Shared.Rent(MiB);
        try
        {
            for (var i = 0; i < writes; i++)
            {
                buffers[i] = IoBufferPool.Shared.Rent(MiB);
                Random.Shared.NextBytes(buffers[i].Memory.Span[..MiB]);
                pending[i] = server.Volume.WriteAsync((long)i * MiB, buffers[i].Memory[..MiB]);
            }

            queue.Io.EndBatch();
            foreach (var write in pending)
            {
                queue.Wait(write);
            }

            var (onQueueThreads, onSenderThread) = server.Client.SentBatches();
            Assert.Equal(1, onQueueThreads);
            Assert.True(onSenderThread >= 1, "the socket took the whole batch without blocking; the hand-off was not exercised");
            // Engine buffers go through the payload pipe (no copy by send), on both threads.
            Assert.Equal((long)writes * MiB, server.Client.PipedBytes());

            for (var i = 0; i < writes; i++)
            {
                queue.EndBatchAndWait(server.Volume.ReadAsync((long)i * MiB, back.Memory[..MiB]));
                Assert.True(buffers[i].Memory.Span[..MiB].SequenceEqual(back.Memory.Span[..MiB]), $"MiB {i} reads back different");
            }
        }
        finally
        {
            foreach (var buffer in buffers)
            {
                if (buffer is not null)
                {
                    IoBufferPool.Shared.Return(buffer);
                }
            }

            IoBufferPool.Shared.Return(back);
        }
    }

    [NbdkitFact]
    public void AManagedArrayIsSentByCopyNeverThroughThePipe()
    {
        // The GC may move an array while the socket still holds references to its pages: only
        // native engine buffers may be spliced.
        using var server = new SyncServer("memory", "size=4M");
        using var queue = new TestQueueThread();
        var data = new byte[256 * 1024];
        var back = new byte[data.Length];
        Random.Shared.NextBytes(data);
        queue.EndBatchAndWait(server.Volume.WriteAsync(MiB, data));
        queue.EndBatchAndWait(server.Volume.ReadAsync(MiB, back));
        Assert.True(data.AsSpan().SequenceEqual(back));
        Assert.Equal(0, server.Client.PipedBytes());
    }

    [NbdkitFact]
    public void RepliesAreReadOnTheQueueThreadThatSentTheRequests()
    {
        using var server = new SyncServer("memory", "size=8M");
        using var queue = new TestQueueThread();
        var data = IoBufferPool.Shared.Rent(MiB);
        var back = IoBufferPool.Shared.Rent(MiB);
        try
        {
            Random.Shared.NextBytes(data.Memory.Span[..MiB]);
            queue.EndBatchAndWait(server.Volume.WriteAsync(0, data.Memory[..MiB]));
            var pending = new ValueTask[16];
            for (var round = 0; round < 4; round++)
            {
                for (var i = 0; i < pending.Length; i++)
                {
                    pending[i] = server.Volume.ReadAsync(i * 65536L, back.Memory.Slice(i * 65536, 65536));
                }

                queue.Io.EndBatch();
                foreach (var read in pending)
                {
                    queue.Wait(read);
                }

                Assert.True(data.Memory.Span[..MiB].SequenceEqual(back.Memory.Span[..MiB]), $"round {round} read back different data");
                back.Memory.Span[..MiB].Clear();
            }

            // The first reply may come through the thread pool (the loop moves once a queue thread
            // sent); every later one is read on the queue's ring.
            Assert.True(server.Client.ReadsOnQueueThread() > 0, "no reply was read on the queue thread");
        }
        finally
        {
            IoBufferPool.Shared.Return(data);
            IoBufferPool.Shared.Return(back);
        }
    }

    [NbdkitFact]
    public void AQueueThatStopsWhileTheLoopWaitsOnItsRingLosesNoReply()
    {
        using var server = new SyncServer("memory", "size=4M");
        var data = new byte[65536];
        var back = new byte[data.Length];
        Random.Shared.NextBytes(data);
        using (var queue = new TestQueueThread())
        {
            queue.EndBatchAndWait(server.Volume.WriteAsync(0, data));
            queue.EndBatchAndWait(server.Volume.ReadAsync(0, back));
            // Let the loop move onto this thread and wait there.
            queue.RunFor(TimeSpan.FromMilliseconds(200));
            Assert.True(server.Client.ReadsOnQueueThread() > 0, "the loop never moved onto the queue thread");
            queue.Stop();
        }

        // No queue thread any more: replies come through the thread pool, whole and in order, at once
        // (well inside the request timeout, whose watchdog would otherwise replace the connection).
        Array.Clear(back);
        Assert.True(server.Volume.WriteAsync(65536, data).AsTask().Wait(TimeSpan.FromSeconds(10)), "no reply to a WRITE after the queue stopped");
        Assert.True(server.Volume.ReadAsync(65536, back).AsTask().Wait(TimeSpan.FromSeconds(10)), "no reply to a READ after the queue stopped");
        Assert.True(data.AsSpan().SequenceEqual(back));
    }

    [NbdkitFact]
    public void ASendThatFailsOnTheQueueThreadWhoseRingHoldsTheSocketEndsTheConnectionWithoutHanging()
    {
        using var server = new SyncServer("memory", "size=4M");
        var data = new byte[4096];
        var connectionEnded = false;
        Exception? failure = null;
        // The queue thread's part runs on a thread of its own: a hang fails the test instead of the run.
        var queueThread = new Thread(() =>
        {
            try
            {
                using var queue = new TestQueueThread();
                queue.EndBatchAndWait(server.Volume.WriteAsync(0, data));
                queue.EndBatchAndWait(server.Volume.ReadAsync(0, data));
                queue.RunFor(TimeSpan.FromMilliseconds(200)); // the receive loop moves here and polls on this ring
                if (server.Client.ReadsOnQueueThread() == 0)
                {
                    throw new InvalidOperationException("the loop never moved onto the queue thread");
                }

                // The server dies. Its end reaches the loop's poll in the kernel, but the completion waits
                // on this thread's ring, which is not reaped now: the failure comes from a send at a batch
                // end, on the thread whose ring holds the socket. Ending the connection must not wait for it.
                server.KillServer();
                for (var i = 0; i < 50 && server.Client.LiveConnections() > 0; i++)
                {
                    _ = server.Volume.WriteAsync(4096, data).AsTask(); // answered with EIO when the volume closes
                    queue.Io.EndBatch();
                    Thread.Sleep(20);
                }

                connectionEnded = server.Client.LiveConnections() == 0;
            }
            catch (Exception e)
            {
                failure = e;
            }
        });
        queueThread.Start();
        Assert.True(queueThread.Join(TimeSpan.FromSeconds(30)), "the queue thread hung while its send failed");
        Assert.Null(failure);
        Assert.True(connectionEnded, "no send failed after the server died");
    }

    [NbdkitFact]
    public void ALargeReadLandsInTheRequestsRegisteredPages()
    {
        const int length = 512 * 1024;
        using var server = new SyncServer("memory", "size=4M");
        using var pages = new RegisteredPages(length);
        var data = Enumerable.Range(0, length).Select(i => (byte)((i * 13) | 1)).ToArray(); // no zero byte
        pages.Queue.EndBatchAndWait(server.Volume.WriteAsync(MiB, data));
        pages.MoveReceiveLoopHere(server.Volume);

        for (var round = 0; round < 3; round++)
        {
            Assert.True(data.AsSpan().SequenceEqual(pages.Read(server.Volume, MiB)), $"round {round} read back different data");
        }

        Assert.True(server.Client.ZeroCopyReceives() > 0, "no payload was received straight into the registered pages");
    }

    [Fact]
    public void APayloadThatArrivesInPartsLandsWithoutWaitingForMoreBytesThanItHasLeft()
    {
        // The receive waits for a large payload by SO_RCVLOWAT, so a reply costs one wake-up. Here
        // each large READ's payload comes in two parts with a pause between and nothing after, so a
        // receive finds part of it already there. Having taken that part, it must not wait, by the
        // same mark, for more bytes than the payload has left: they would only come with a later reply.
        const int length = 512 * 1024;
        var disk = Enumerable.Range(0, 4 * MiB).Select(i => (byte)((i * 7) | 1)).ToArray();
        using var server = new ScriptedServer(ServeReadsInTwoParts(disk, firstPart: 200 * 1024));
        using var pages = new RegisteredPages(length);
        pages.MoveReceiveLoopHere(server.Volume);

        // The first round leaves the receive buffer in its large-payload mode, in which a reply's
        // header is read with a few KiB at most: the rest of the first part stays in the socket.
        for (var round = 0; round < 3; round++)
        {
            var watch = Stopwatch.StartNew();
            var back = pages.Read(server.Volume, MiB);
            Assert.True(watch.Elapsed < TimeSpan.FromSeconds(5), $"round {round}: the read took {watch.Elapsed.TotalSeconds:F1} s");
            Assert.True(disk.AsSpan(MiB, length).SequenceEqual(back), $"round {round} read back different data");
        }

        Assert.True(server.Client.ZeroCopyReceives() > 0, "no payload was received straight into the registered pages");
    }

    /// <summary>Serves <paramref name="disk"/> with simple replies; a READ's payload beyond <paramref name="firstPart"/> bytes comes 300 ms after the rest of the reply.</summary>
    private static Func<System.Net.Sockets.NetworkStream, Task> ServeReadsInTwoParts(byte[] disk, int firstPart) => async s =>
    {
        await FakeNbdServer.HandshakeAsync(s, (ulong)disk.Length, structured: false);
        while (true)
        {
            var (type, _, handle, offset, count, _) = await FakeNbdServer.ReadRequestAsync(s);
            if (type != 0)
            {
                return; // the volume's goodbye (NBD_CMD_DISC): this script only serves reads
            }

            var payload = disk.AsMemory((int)offset, (int)count);
            var split = Math.Min(firstPart, payload.Length);
            await FakeNbdServer.SimpleReplyAsync(s, handle, 0, payload[..split].ToArray());
            if (split < payload.Length)
            {
                await Task.Delay(300);
                await s.WriteAsync(payload[split..]);
            }
        }
    };

    /// <summary>
    /// A request's pages as a zero-copy READ sees them, on a queue thread the test thread plays: a
    /// user buffer registered at slot 0 stands in for the kernel's registration, and the user-copy
    /// window (for bytes the receive buffer already held) is a sparse file instead of the ublk char
    /// device. Every byte of a read must arrive in one of the two.
    /// </summary>
    private sealed unsafe class RegisteredPages : IDisposable
    {
        private readonly int _length;
        private readonly string _copyFile = Path.Combine(Path.GetTempPath(), $"nbd-usercopy-{Guid.NewGuid():N}");
        private readonly byte* _pages;
        private readonly Microsoft.Win32.SafeHandles.SafeFileHandle _copyWindow;

        public RegisteredPages(int length)
        {
            _length = length;
            _pages = (byte*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc((nuint)length, 4096);
            _copyWindow = File.OpenHandle(_copyFile, FileMode.CreateNew, FileAccess.ReadWrite);
            Queue = new TestQueueThread(userCopy: new UserCopyChannel((int)_copyWindow.DangerousGetHandle(), 0));
            Queue.Ring.RegisterBuffer(_pages, (nuint)length);
        }

        public TestQueueThread Queue { get; }

        /// <summary>Moves the volume's receive loop onto this thread (the first replies come through the pool).</summary>
        public void MoveReceiveLoopHere(IBlockBackend volume)
        {
            Queue.EndBatchAndWait(volume.ReadAsync(0, new byte[4096]));
            Queue.RunFor(TimeSpan.FromMilliseconds(200));
        }

        /// <summary>A zero-copy READ of the pages' length at <paramref name="offset"/>: what landed in the pages or through the window.</summary>
        public byte[] Read(IBlockBackend volume, long offset)
        {
            new Span<byte>(_pages, _length).Clear();
            RandomAccess.Write(_copyWindow, new byte[_length], UblkAbi.UserCopyOffset(0, 0));
            var target = new RegisteredBuffer(Queue.Io, 0, _length, (ulong)_pages);
            Assert.True(((StoreVolume)volume).TryReadRegistered(offset, target, CancellationToken.None, out var read));
            Queue.EndBatchAndWait(read);

            var landed = new byte[_length];
            RandomAccess.Read(_copyWindow, landed, UblkAbi.UserCopyOffset(0, 0));
            var received = new ReadOnlySpan<byte>(_pages, _length);
            for (var i = 0; i < _length; i++)
            {
                // The data has no zero byte: a zero in the window means the byte came into the pages.
                landed[i] = landed[i] != 0 ? landed[i] : received[i];
            }

            return landed;
        }

        public void Dispose()
        {
            Queue.Dispose();
            _copyWindow.Dispose();
            System.Runtime.InteropServices.NativeMemory.AlignedFree(_pages);
            File.Delete(_copyFile);
        }
    }

    /// <summary>A scripted server and a one-connection volume on it, set up and torn down without leaving the test thread.</summary>
    private sealed class ScriptedServer : IDisposable
    {
        private readonly FakeNbdServer _server;

        public ScriptedServer(Func<System.Net.Sockets.NetworkStream, Task> script)
        {
            _server = new FakeNbdServer(script);
            Volume = StoreRegistry.Open("nbd", new Dictionary<string, string> { ["endpoint"] = _server.Endpoint.ToString(), ["connections"] = "1" })
                .OpenVolumeAsync("x").GetAwaiter().GetResult();
        }

        public IBlockBackend Volume { get; }

        public NbdClient Client => ((NbdVolume)Volume).Client;

        public void Dispose()
        {
            Assert.True(Volume.DisposeAsync().AsTask().Wait(TimeSpan.FromSeconds(30)), "closing the volume took more than 30 s");
            _server.DisposeAsync().AsTask().GetAwaiter().GetResult();
        }
    }

    /// <summary>nbdkit and a one-connection volume on it, set up and torn down without leaving the test thread.</summary>
    private sealed class SyncServer : IDisposable
    {
        private readonly NbdServerProcess _server;

        public SyncServer(params string[] pluginAndArgs)
        {
            _server = NbdServerProcess.StartNbdkitAsync(pluginAndArgs).GetAwaiter().GetResult();
            Volume = StoreRegistry.Open("nbd", new Dictionary<string, string> { ["endpoint"] = _server.Endpoint.ToString(), ["connections"] = "1" })
                .OpenVolumeAsync("x").GetAwaiter().GetResult();
        }

        public IBlockBackend Volume { get; }

        public NbdClient Client => ((NbdVolume)Volume).Client;

        /// <summary>SIGKILL: the server goes without a goodbye.</summary>
        public void KillServer() => _server.Kill();

        public void Dispose()
        {
            // Bounded: a broken receive path must fail the test, not hang the run.
            Assert.True(Volume.DisposeAsync().AsTask().Wait(TimeSpan.FromSeconds(30)), "closing the volume took more than 30 s");
            _server.DisposeAsync().AsTask().GetAwaiter().GetResult();
        }
    }
}
