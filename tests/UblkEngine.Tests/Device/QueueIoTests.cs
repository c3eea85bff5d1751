using System.IO.Pipes;
using UblkCsi.Engine;
using UblkCsi.Engine.IoUring;
using UblkCsi.Tests.Shared;

namespace UblkCsi.UblkEngine.Tests.Device;

/// <summary>
/// The backend-facing side of a queue's io_uring against this host's kernel: the test thread plays
/// the queue thread (binds a QueueIo and reaps its CQEs the way the queue loop does).
/// </summary>
public sealed class QueueIoTests : IDisposable
{
    private readonly string _path = Path.Combine(Path.GetTempPath(), $"queue-io-{Guid.NewGuid():N}");
    private TestQueueThread? _queue;

    private Ring Ring => _queue!.Ring;

    public void Dispose()
    {
        _queue?.Dispose();
        File.Delete(_path);
    }

    [Fact]
    public void WritesAndReadsAFileOnTheQueueRing()
    {
        var io = Bind(operations: 4);
        using var file = File.Open(_path, FileMode.CreateNew, FileAccess.ReadWrite);
        var fd = Fd(file);
        var data = Enumerable.Range(0, 8192).Select(i => (byte)(i * 7)).ToArray();

        Assert.True(io.TryWrite(fd, data, 4096, out var write));
        Assert.False(write.IsCompleted); // nothing reaches the kernel before the queue submits
        Reap(write);
        Assert.True(io.TryDataSync(fd, out var sync));
        Reap(sync);

        var back = new byte[8192];
        Assert.True(io.TryRead(fd, back, 4096, out var read));
        Reap(read);
        Assert.Equal(data, back);
    }

    [Fact]
    public void AReadPastTheFilesEndIsFilledWithZeros()
    {
        var io = Bind(operations: 1);
        File.WriteAllBytes(_path, Enumerable.Repeat((byte)0xAB, 6000).ToArray());
        using var file = File.OpenHandle(_path);
        var back = Enumerable.Repeat((byte)0xFF, 8192).ToArray();

        Assert.True(io.TryRead(Fd(file), back, 0, out var read));
        Reap(read);

        Assert.All(back[..6000], b => Assert.Equal(0xAB, b));
        Assert.All(back[6000..], b => Assert.Equal(0, b));
    }

    [Fact]
    public void AFailedOperationCarriesTheErrno()
    {
        var io = Bind(operations: 1);
        File.WriteAllBytes(_path, new byte[4096]);
        using var readOnly = File.OpenHandle(_path, FileMode.Open, FileAccess.Read);

        Assert.True(io.TryWrite(Fd(readOnly), new byte[4096], 0, out var write));
        var error = Assert.Throws<BlockBackendException>(() => Reap(write));
        Assert.Equal(9, error.Errno); // EBADF: not open for writing
        Assert.Contains("write of 4096 bytes at offset 0", error.Message);

        // The slot was returned: the next operation gets it.
        Assert.True(io.TryDataSync(Fd(readOnly), out var sync));
        Reap(sync);
    }

    [Fact]
    public void RefusesWhenEverySlotIsBusyOrOffTheQueueThread()
    {
        var io = Bind(operations: 1);
        using var file = File.Open(_path, FileMode.CreateNew, FileAccess.ReadWrite);
        var fd = Fd(file);

        var acceptedElsewhere = true;
        var other = new Thread(() => acceptedElsewhere = io.TryDataSync(fd, out _));
        other.Start();
        other.Join();
        Assert.False(acceptedElsewhere);

        Assert.True(io.TryDataSync(fd, out var first));
        Assert.False(io.TryDataSync(fd, out _));
        Reap(first);
        Assert.True(io.TryDataSync(fd, out var again));
        Reap(again);
    }

    [Fact]
    public void AResultTakenTwiceIsRefusedAndGivesTheSlotBackOnce()
    {
        var io = Bind(operations: 1);
        using var file = File.Open(_path, FileMode.CreateNew, FileAccess.ReadWrite);
        var fd = Fd(file);

        Assert.True(io.TryDataSync(fd, out var sync));
        Reap(sync);
        Assert.Throws<InvalidOperationException>(() => sync.GetAwaiter().GetResult());

        // The one slot is free once, not twice.
        Assert.True(io.TryDataSync(fd, out var next));
        Assert.False(io.TryDataSync(fd, out _));

        // A stale token (the earlier operation's) must not free the slot the next one holds.
        Assert.Throws<InvalidOperationException>(() => sync.GetAwaiter().GetResult());
        Assert.False(io.TryDataSync(fd, out _));
        Reap(next);
    }

    [Fact]
    public void CompletionsOnTheQueueThreadAllocateNothing()
    {
        var io = Bind(operations: 4);
        using var file = File.Open(_path, FileMode.CreateNew, FileAccess.ReadWrite);
        var fd = Fd(file);
        var buffer = new byte[4096];
        for (var warm = 0; warm < 100; warm++)
        {
            Assert.True(io.TryWrite(fd, buffer, 0, out var w));
            Reap(w);
        }

        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 2000; i++)
        {
            Assert.True(io.TryWrite(fd, buffer, (i % 16) * 4096L, out var write));
            Reap(write);
            Assert.True(io.TryRead(fd, buffer, (i % 16) * 4096L, out var read));
            Reap(read);
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    [Fact]
    public void ARegisteredReadGoesToItsSlotOfTheRingsBufferTable()
    {
        // The table is sparse, as under UBLK_F_AUTO_BUF_REG before the driver fills a slot: a
        // READ_FIXED naming an empty slot fails with EFAULT, which proves it was a fixed read there.
        var io = Bind(operations: 2);
        Ring.RegisterSparseBuffers(4);
        File.WriteAllBytes(_path, new byte[8192]);
        using var file = File.OpenHandle(_path);

        Assert.True(io.TryReadRegistered(Fd(file), new RegisteredBuffer(io, 3, 4096), 0, out var read));
        var error = Assert.Throws<BlockBackendException>(() => Reap(read));
        Assert.Equal(14, error.Errno); // EFAULT: nothing registered at slot 3
        Assert.Contains("zero-copy read of 4096 bytes at offset 0", error.Message);

        Assert.True(io.TryWriteRegistered(Fd(file), new RegisteredBuffer(io, 3, 4096), 4096, out var write));
        Assert.Equal(14, Assert.Throws<BlockBackendException>(() => Reap(write)).Errno);
    }

    [Fact]
    public void ARegisteredBufferOfAnotherQueueIsRefused()
    {
        var io = Bind(operations: 2);
        using var otherRing = Ring.Create(4);
        var other = new QueueIo(otherRing, 2);
        File.WriteAllBytes(_path, new byte[4096]);
        using var file = File.OpenHandle(_path);

        Assert.False(io.TryReadRegistered(Fd(file), new RegisteredBuffer(other, 0, 4096), 0, out _));
        Assert.False(io.TryWriteRegistered(Fd(file), new RegisteredBuffer(io, 0, 0), 0, out _));
    }

    [Fact]
    public void BatchListenersRunOnceAtTheBatchEnd()
    {
        var io = Bind(operations: 1);
        var listener = new CountingListener(io);
        io.CallAtBatchEnd(listener);
        io.CallAtBatchEnd(listener);
        Assert.Equal(0, listener.Calls);

        io.EndBatch();
        Assert.Equal(1, listener.Calls); // registered twice, called once; it re-registered itself
        io.EndBatch();
        Assert.Equal(2, listener.Calls);
        listener.Stop = true;
        io.EndBatch();
        io.EndBatch();
        Assert.Equal(3, listener.Calls);
    }

    [Fact]
    public void AReadinessWaitCompletesWhenThePipeHasDataAndConsumesNothing()
    {
        var io = Bind(operations: 1);
        using var pipe = new Pipe();

        Assert.True(io.TryWaitReadable(pipe.ReaderFd, out var readable));
        Ring.Submit();
        Thread.Sleep(100);
        Assert.Equal(0, _queue!.Drain()); // nothing written yet: the poll is still in the kernel
        Assert.False(readable.IsCompleted);

        pipe.Writer.Write([42]);
        Reap(readable);
        Assert.Equal(42, pipe.Reader.ReadByte()); // the poll left the byte where it was
    }

    [Fact]
    public void StoppingEndsReadinessWaitsAndRunsWhatWasPosted()
    {
        var io = Bind(operations: 2);
        using var pipe = new Pipe();
        Assert.True(io.TryWaitReadable(pipe.ReaderFd, out var readable));
        Ring.Submit();
        var posted = new CountingListener(io) { Stop = true };
        Assert.True(io.TryPost(posted));

        _queue!.Stop(); // what the queue thread does on exit

        Assert.True(readable.IsCompletedSuccessfully); // early, with nothing to read: the reader re-checks elsewhere
        Assert.Equal(1, posted.Calls);
        Assert.False(io.TryPost(posted)); // nobody is left to run it
    }

    [Fact]
    public void APostFromAnotherThreadRunsOnTheQueueThreadAtTheBatchEnd()
    {
        var io = Bind(operations: 1);
        var listener = new ThreadRecordingListener();
        var other = new Thread(() => Assert.True(io.TryPost(listener)));
        other.Start();
        other.Join();
        Assert.Equal(-1, listener.CalledOnThread);

        io.EndBatch();
        Assert.Equal(Environment.CurrentManagedThreadId, listener.CalledOnThread);
    }

    [Fact]
    public unsafe void AReceiveIntoARegisteredBufferWaitsForEveryByteFromTheSocket()
    {
        // A stream socket takes no file offset (0, or ESPIPE) and returns what has arrived: the
        // operation continues into the rest of the buffer until all of it came, in order.
        const int length = 192 * 1024;
        var pages = (byte*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc(256 * 1024, 4096);
        try
        {
            new Span<byte>(pages, 256 * 1024).Fill(0xEE);
            var io = Bind(operations: 1);
            Ring.RegisterBuffer(pages, 256 * 1024);
            using var pair = SocketPair.Create();
            var data = Enumerable.Range(0, length).Select(i => (byte)(i * 13)).ToArray();

            Assert.True(io.TryReceiveRegistered(pair.ReceiverFd, new RegisteredBuffer(io, 0, 256 * 1024, (ulong)pages), 4096, length, out var receive));
            var writer = new Thread(() =>
            {
                try
                {
                    for (var sent = 0; sent < length; sent += 48 * 1024)
                    {
                        pair.Sender.Send(data.AsSpan(sent, 48 * 1024));
                        Thread.Sleep(50);
                    }
                }
                catch (System.Net.Sockets.SocketException)
                {
                    // The test failed and closed the pair; its assertion says why.
                }
            });
            writer.Start();
            Reap(receive);
            writer.Join();

            Assert.True(new ReadOnlySpan<byte>(pages + 4096, length).SequenceEqual(data));
            Assert.Equal(0xEE, pages[4095]);
            Assert.Equal(0xEE, pages[4096 + length]);
        }
        finally
        {
            System.Runtime.InteropServices.NativeMemory.AlignedFree(pages);
        }
    }

    [Fact]
    public unsafe void AReceiveThatThePeerEndsEarlyFailsWithEio()
    {
        var pages = (byte*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc(4096, 4096);
        try
        {
            var io = Bind(operations: 1);
            Ring.RegisterBuffer(pages, 4096);
            using var pair = SocketPair.Create();
            pair.Sender.Send(new byte[1000]);
            pair.Sender.Shutdown(System.Net.Sockets.SocketShutdown.Send);

            Assert.True(io.TryReceiveRegistered(pair.ReceiverFd, new RegisteredBuffer(io, 0, 4096, (ulong)pages), 0, 4096, out var receive));
            var error = Assert.Throws<BlockBackendException>(() => Reap(receive));
            Assert.Equal(5, error.Errno);
            Assert.Contains("the peer closed the connection after 1000 bytes", error.Message);
        }
        finally
        {
            System.Runtime.InteropServices.NativeMemory.AlignedFree(pages);
        }
    }

    private QueueIo Bind(int operations)
    {
        _queue = new TestQueueThread(operations);
        return _queue.Io;
    }

    /// <summary>What the queue loop does: submit, wait, route backend CQEs, until the task is done.</summary>
    private void Reap(ValueTask pending) => _queue!.Reap(pending);

    private static int Fd(Microsoft.Win32.SafeHandles.SafeFileHandle handle) => (int)handle.DangerousGetHandle();

    private static int Fd(FileStream file) => Fd(file.SafeFileHandle);


    /// <summary>An anonymous pipe: what is written to <see cref="Writer"/> makes <see cref="ReaderFd"/> readable.</summary>
    private sealed class Pipe : IDisposable
    {
        public Pipe()
        {
            Writer = new AnonymousPipeServerStream(PipeDirection.Out);
            Reader = new AnonymousPipeClientStream(PipeDirection.In, Writer.ClientSafePipeHandle);
        }

        public AnonymousPipeServerStream Writer { get; }

        public AnonymousPipeClientStream Reader { get; }

        public int ReaderFd => (int)Reader.SafePipeHandle.DangerousGetHandle();

        public void Dispose()
        {
            Reader.Dispose();
            Writer.Dispose();
        }
    }

    /// <summary>A connected pair of unix stream sockets.</summary>
    private sealed class SocketPair : IDisposable
    {
        private SocketPair(System.Net.Sockets.Socket sender, System.Net.Sockets.Socket receiver)
        {
            Sender = sender;
            Receiver = receiver;
        }

        public System.Net.Sockets.Socket Sender { get; }

        public System.Net.Sockets.Socket Receiver { get; }

        public int ReceiverFd => (int)Receiver.SafeHandle.DangerousGetHandle();

        public static SocketPair Create()
        {
            var path = Path.Combine(Path.GetTempPath(), $"qio-{Guid.NewGuid():N}.sock");
            using var listener = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Unspecified);
            listener.Bind(new System.Net.Sockets.UnixDomainSocketEndPoint(path));
            listener.Listen(1);
            var sender = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Unspecified);
            sender.Connect(new System.Net.Sockets.UnixDomainSocketEndPoint(path));
            var receiver = listener.Accept();
            File.Delete(path);
            return new SocketPair(sender, receiver);
        }

        public void Dispose()
        {
            Sender.Dispose();
            Receiver.Dispose();
        }
    }

    private sealed class ThreadRecordingListener : IQueueBatchListener
    {
        public int CalledOnThread { get; private set; } = -1;

        public void OnQueueBatchEnd() => CalledOnThread = Environment.CurrentManagedThreadId;
    }

    private sealed class CountingListener(QueueIo io) : IQueueBatchListener
    {
        public int Calls { get; private set; }

        public bool Stop { get; set; }

        public void OnQueueBatchEnd()
        {
            Calls++;
            if (!Stop)
            {
                io.CallAtBatchEnd(this);
            }
        }
    }
}
