using UblkCsi.Engine;
using UblkCsi.Engine.Abi;
using UblkCsi.Engine.Buffers;
using UblkCsi.Engine.Device;
using UblkCsi.Engine.Interop;
using UblkCsi.Engine.IoUring;
using UblkCsi.Linux;

namespace UblkCsi.UblkEngine.Tests.Device;

/// <summary>
/// Drives a <see cref="RequestDispatcher"/> the way a queue thread does, without a ublk kernel:
/// request data moves through a sparse temp file at the same user-copy offsets the kernel's
/// /dev/ublkcN exposes, and commits are recorded instead of sent.
/// </summary>
internal sealed unsafe class DispatcherHarness : ICommitSink, IDisposable
{
    public const int QueueId = 1;
    private readonly string _windowPath = Path.Combine(Path.GetTempPath(), $"ublk-window-{Guid.NewGuid():N}");
    private readonly FileDescriptorHandle _window;
    private readonly EventFdWaker _waker = new();

    public DispatcherHarness(IBlockBackend backend, int depth = 8, int maxIoBytes = 256 * 1024, bool userCopy = true, IoBufferPool? pool = null, DeviceFailureLog? failures = null, long? deviceBytes = null, QueueIo? registeredRing = null)
    {
        _window = FileDescriptorHandle.Open(_windowPath, Libc.O_RDWR | 0x40 /* O_CREAT */);
        Pool = pool ?? new IoBufferPool(16L << 20);
        Capacity = new DeviceCapacity(deviceBytes ?? backend.Info.SizeBytes);
        Dispatcher = new RequestDispatcher(
            depth, backend, Capacity, maxIoBytes,
            userCopy ? new UserCopyChannel(_window.Fd, QueueId) : null,
            Pool, this, _waker, failures, registeredRing);
    }

    public RequestDispatcher Dispatcher { get; }

    /// <summary>The device size the dispatcher enforces (a live grow raises it).</summary>
    public DeviceCapacity Capacity { get; }

    public IoBufferPool Pool { get; }

    /// <summary>Commits in order: (tag, result, registered buffer address).</summary>
    public List<(int Tag, int Result, ulong Buffer)> Commits { get; } = new(capacity: 1 << 16);

    public void Commit(int tag, int result, ulong bufferAddress) => Commits.Add((tag, result, bufferAddress));

    public void Dispatch(int tag, UblkIoOp op, long offset, int length, uint flags = 0)
    {
        var desc = new UblksrvIoDesc
        {
            OpFlags = (uint)op | flags,
            NrSectors = (uint)(length >> 9),
            StartSector = (ulong)(offset >> 9),
        };
        Dispatcher.Dispatch(tag, desc);
    }

    /// <summary>Puts the payload the "kernel" offers for a WRITE on <paramref name="tag"/>.</summary>
    public void OfferWriteData(int tag, ReadOnlySpan<byte> data)
    {
        fixed (byte* p = data)
        {
            Assert.Equal(data.Length, (int)Libc.Pwrite(_window.Fd, p, (nuint)data.Length, UblkAbi.UserCopyOffset(QueueId, tag)));
        }
    }

    /// <summary>What the dispatcher delivered for a READ on <paramref name="tag"/>.</summary>
    public byte[] DeliveredReadData(int tag, int length)
    {
        var data = new byte[length];
        fixed (byte* p = data)
        {
            Assert.Equal(length, (int)Libc.Pread(_window.Fd, p, (nuint)length, UblkAbi.UserCopyOffset(QueueId, tag)));
        }

        return data;
    }

    /// <summary>Waits (like the queue thread, but polling) until <paramref name="count"/> commits exist.</summary>
    public void DrainUntil(int count, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(10));
        while (Commits.Count < count)
        {
            Assert.True(DateTime.UtcNow < deadline, $"only {Commits.Count} of {count} commits arrived");
            if (Dispatcher.DrainCompletions() == 0)
            {
                Thread.Sleep(1);
            }
        }
    }

    public void Dispose()
    {
        Dispatcher.Dispose();
        _waker.Dispose();
        _window.Dispose();
        File.Delete(_windowPath);
    }
}
