using Microsoft.Extensions.Logging;
using UblkCsi.Engine.Abi;
using UblkCsi.Engine.Buffers;
using UblkCsi.Engine.Interop;
using UblkCsi.Engine.IoUring;
using UblkCsi.Engine.Logging;
using UblkCsi.Engine.Threading;
using UblkCsi.Linux;

namespace UblkCsi.Engine.Device;

/// <summary>What one queue needs from its device.</summary>
internal sealed record QueueSetup(
    int DeviceId,
    int QueueId,
    int Depth,
    int MaxIoBytes,
    DeviceCapacity Capacity,
    bool UserCopy,
    bool AutoBufReg,
    bool IoctlEncoded,
    FileDescriptorHandle CharDevice,
    IBlockBackend Backend,
    IoBufferPool BufferPool,
    CpuSet? Affinity,
    ILogger Logger,
    DeviceFailureLog Failures);

/// <summary>Counters of one queue, sampled from its thread.</summary>
/// <param name="QueueId">Hardware queue index.</param>
/// <param name="Requests">Requests received from the kernel.</param>
/// <param name="BackendErrors">Requests the backend failed.</param>
/// <param name="AllocatedBytes">Managed bytes the queue thread allocated since it began serving (0 in steady state).</param>
public readonly record struct UblkQueueStatistics(int QueueId, long Requests, long BackendErrors, long AllocatedBytes);

/// <summary>
/// One hardware queue: a dedicated OS thread that owns an io_uring, FETCHes every tag once and then
/// loops: wait for completions, dispatch new requests, commit finished ones with COMMIT_AND_FETCH.
/// The kernel binds a queue to the thread that fetched it, so every command for this queue is
/// issued here; other threads only wake it (eventfd) or ask it to stop.
/// </summary>
internal sealed unsafe class UblkQueue : ICommitSink
{
    private const ulong WakeUserData = ulong.MaxValue;
    private const int Running = 0;
    private const int ExitWhenIdle = 1;
    private const uint MaxSubmissionBatch = 64;

    /// <summary>How long the ring waits for its exited thread to be gone in the kernel (milliseconds in practice).</summary>
    private static readonly TimeSpan ThreadExitLimit = TimeSpan.FromSeconds(10);

    private readonly QueueSetup _setup;
    private readonly uint _commitOpcode;
    private readonly uint _fetchOpcode;
    private readonly TaskCompletionSource _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _exited = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly EventFdWaker _waker = new();
    private readonly Thread _thread;

    private Ring? _ring;
    private QueueIo? _queueIo;
    private RequestDispatcher? _dispatcher;
    private UblksrvIoDesc* _descriptors;
    private nuint _descriptorBytes;
    private int _threadId;
    private int _abortedTags;
    private int _exitMode = Running;
    private int _abandonRequested;
    private bool _holdNewRequests;

    private long _requests;
    private long _backendErrors;
    private long _allocatedAtStart;
    private long _allocatedBytes;

    public UblkQueue(QueueSetup setup)
    {
        _setup = setup;
        _commitOpcode = UblkAbi.IoOpcode(UblkIoCommand.CommitAndFetchReq, setup.IoctlEncoded);
        _fetchOpcode = UblkAbi.IoOpcode(UblkIoCommand.FetchReq, setup.IoctlEncoded);
        _thread = new Thread(Run, maxStackSize: 1 << 20)
        {
            IsBackground = true,
            Name = $"ublk{setup.DeviceId}-q{setup.QueueId}",
        };
    }

    public int QueueId => _setup.QueueId;

    /// <summary>Completes when every tag is fetched (the kernel may now send requests), or faults.</summary>
    public Task Ready => _ready.Task;

    /// <summary>Completes when the thread has exited and its ring and mappings are released.</summary>
    public Task Exited => _exited.Task;

    public UblkQueueStatistics Statistics => new(
        _setup.QueueId,
        Volatile.Read(ref _requests),
        Volatile.Read(ref _backendErrors),
        Volatile.Read(ref _allocatedBytes));

    public void Start() => _thread.Start();

    /// <summary>Releases what the constructor opened, for a queue whose device failed to build (never started).</summary>
    public void DisposeUnstarted() => _waker.Dispose();

    /// <summary>
    /// Asks the thread to exit once no backend I/O is in flight. With <paramref name="holdNewRequests"/>
    /// requests that arrive meanwhile are left uncommitted, so that the kernel requeues them for the
    /// next server (handover); otherwise they are still served.
    /// </summary>
    public void RequestExit(bool holdNewRequests)
    {
        Volatile.Write(ref _holdNewRequests, holdNewRequests);
        Volatile.Write(ref _exitMode, ExitWhenIdle);
        _waker.Signal();
    }

    /// <summary>
    /// Gives up backend I/O in flight (a stop or handover gave up waiting): fails it and every later
    /// request with EIO, or, after <see cref="RequestExit"/> with holdNewRequests, leaves it for the next server.
    /// </summary>
    public void AbandonInFlight()
    {
        Volatile.Write(ref _abandonRequested, 1);
        _waker.Signal();
    }

    public void Commit(int tag, int result, ulong bufferAddress) =>
        PrepareIoCommand(_commitOpcode, tag, result, bufferAddress);

    private void Run()
    {
        _threadId = KernelThreads.CurrentId();
        // Before the first FETCH: the kernel delivers this queue's requests in this thread's context,
        // and reclaim must never wait on it.
        IoThreads.PrepareQueueThread(_setup.Affinity, _setup.Logger);
        try
        {
            Setup();
        }
        catch (Exception e)
        {
            _ready.TrySetException(e);
            LeaveThread(fault: null);
            return;
        }

        _ready.TrySetResult();
        Exception? fault = null;
        try
        {
            Serve();
        }
        catch (Exception e)
        {
            fault = new UblkException($"ublk device {_setup.DeviceId} queue {_setup.QueueId} failed: {e.Message}", (e as IoUringException)?.Errno ?? 0, e);
        }

        LeaveThread(fault);
    }

    /// <summary>
    /// The thread's last step. Its ring must outlive it: the kernel delivers requests by task work
    /// that runs on this thread, and a request delivered after the ring's commands were cancelled
    /// (a close of the ring from a live thread lets that happen) belongs to nobody. The device then
    /// never quiesces, and every control command on it waits behind that forever (seen on Linux 6.12
    /// after a handover under writes). Once the thread has exited, such task work requeues its
    /// request instead, as after a crash; so the ring is closed from elsewhere, after the exit.
    /// </summary>
    private void LeaveThread(Exception? fault)
    {
        QueueIo.UnbindCurrentThread();
        _queueIo?.Stop();
        KernelThreads.WaitForExitAsync(_threadId, ThreadExitLimit).ContinueWith(
            exited => ReleaseAfterThreadExit(exited.Result, fault),
            CancellationToken.None,
            TaskContinuationOptions.None,
            TaskScheduler.Default);
    }

    private void ReleaseAfterThreadExit(bool threadExited, Exception? fault)
    {
        if (!threadExited)
        {
            EngineLog.QueueThreadLingers(_setup.Logger, _setup.DeviceId, _setup.QueueId, _threadId, (long)ThreadExitLimit.TotalMilliseconds);
        }

        ReleaseRingAndMappings();
        if (fault != null)
        {
            _exited.TrySetException(fault);
        }
        else
        {
            _exited.TrySetResult();
        }
    }

    private void Setup()
    {
        var depth = _setup.Depth;
        // CQ: every tag has at most one command outstanding, the backend at most depth operations
        // (QueueIo's slots), plus the eventfd read, so 2 * depth + 1 completions can never overflow
        // it. SQ: a batch of commits; when more are prepared in one loop the ring submits early
        // (GetSqe), so a small SQ only costs an extra enter on bursts.
        var outstanding = (2 * (uint)depth) + 1;
        // Only this thread submits (SINGLE_ISSUER), so the kernel may defer the task work that
        // delivers ublk requests and completes file I/O until this thread waits in io_uring_enter
        // (DEFER_TASKRUN): it then runs as one batch in that call, with no interrupt of the running
        // thread and no separate wake-up for each piece. Serve always waits with GETEVENTS, which is
        // what runs it. Paired against COOP_TASKRUN alone through a file volume's ext4 (docs/design.md):
        // 6.12 +26% 4k randread, +12-14% at 1 MiB; 6.17 zero copy +11-15% at 4k in one boot, within the noise in another.
        // Deferred work left when the ring closes after the thread exited requeues its request (see LeaveThread).
        _ring = Ring.CreateWithFallback(
            Math.Min(outstanding, MaxSubmissionBatch),
            IoUringSetupFlags.None,
            IoUringSetupFlags.CoopTaskRun | IoUringSetupFlags.SingleIssuer | IoUringSetupFlags.DeferTaskRun,
            cqEntries: outstanding);
        _queueIo = new QueueIo(_ring, depth, _waker)
        {
            UserCopy = _setup.UserCopy ? new UserCopyChannel(_setup.CharDevice.Fd, _setup.QueueId) : null,
        };
        if (_setup.AutoBufReg)
        {
            // The driver registers each request's pages at its tag in this ring's table (FETCH and
            // COMMIT_AND_FETCH name the slot) and unregisters them at the commit.
            _ring.RegisterSparseBuffers((uint)depth);
        }

        _descriptorBytes = (nuint)UblkAbi.DescriptorMapLength(depth);
        var mapping = Libc.Mmap(0, _descriptorBytes, Libc.PROT_READ, Libc.MAP_SHARED | Libc.MAP_POPULATE, _setup.CharDevice.Fd, UblkAbi.DescriptorMapOffset(_setup.QueueId));
        if (mapping == Libc.MapFailed)
        {
            var errno = Libc.LastErrno;
            throw new UblkException($"mmap of the request descriptors of ublk device {_setup.DeviceId} queue {_setup.QueueId} failed: {Errno.Describe(errno)}", errno);
        }

        _descriptors = (UblksrvIoDesc*)mapping;
        _dispatcher = new RequestDispatcher(depth, _setup.Backend, _setup.Capacity, _setup.MaxIoBytes, _queueIo.UserCopy, _setup.BufferPool, this, _waker, _setup.Failures, _setup.AutoBufReg ? _queueIo : null);

        _waker.Arm(_ring, WakeUserData);
        for (var tag = 0; tag < depth; tag++)
        {
            PrepareIoCommand(_fetchOpcode, tag, 0, _dispatcher.RegisteredBufferAddress(tag));
        }

        _ring.Submit();
        _queueIo.BindToCurrentThread();
        _allocatedAtStart = GC.GetAllocatedBytesForCurrentThread();
    }

    private void Serve()
    {
        var ring = _ring!;
        var dispatcher = _dispatcher!;
        var queueIo = _queueIo!;
        var depth = _setup.Depth;
        while (true)
        {
            ring.SubmitAndWait(1);
            while (ring.TryGetCompletion(out var cqe))
            {
                if (cqe.UserData == WakeUserData)
                {
                    _waker.Acknowledge(ring, WakeUserData);
                    continue;
                }

                if ((cqe.UserData & QueueIo.OperationMark) != 0)
                {
                    // A backend operation: its continuation (on this thread) hands the tag back for DrainCompletions.
                    queueIo.OnCompletion(cqe.UserData, cqe.Result);
                    continue;
                }

                OnCommandCompleted((int)cqe.UserData, cqe.Result, dispatcher);
            }

            if (Volatile.Read(ref _abandonRequested) != 0 && !dispatcher.FailNewRequests)
            {
                dispatcher.AbandonInFlight(leaveForNextServer: Volatile.Read(ref _holdNewRequests));
            }

            // Batch-end callbacks first: anything they complete on this thread is drained right after.
            // Again while draining finds something: a request a drained one started anew (a zero-copy
            // one retried through a buffer) may have asked for a batch end too, and the next wait
            // would not end for it.
            do
            {
                queueIo.EndBatch();
            }
            while (dispatcher.DrainCompletions() > 0);
            Volatile.Write(ref _requests, dispatcher.Requests);
            Volatile.Write(ref _backendErrors, dispatcher.BackendErrors);
            Volatile.Write(ref _allocatedBytes, GC.GetAllocatedBytesForCurrentThread() - _allocatedAtStart);

            var allAborted = _abortedTags == depth;
            var exitRequested = Volatile.Read(ref _exitMode) == ExitWhenIdle;
            if (dispatcher.InFlight == 0 && (allAborted || exitRequested))
            {
                // Hand the last commits to the kernel before the ring goes away.
                ring.Submit();
                return;
            }
        }
    }

    private void OnCommandCompleted(int tag, int result, RequestDispatcher dispatcher)
    {
        if ((uint)tag >= (uint)_setup.Depth)
        {
            throw new UblkException($"unexpected completion for tag {tag}");
        }

        switch (result)
        {
            case UblkAbi.IoResultOk:
                if (Volatile.Read(ref _holdNewRequests))
                {
                    // Left owned by this server: when the ring closes the kernel requeues it (REISSUE).
                    return;
                }

                // Acquire ordering comes from the CQE read; the descriptor is stable while we own the tag.
                dispatcher.Dispatch(tag, in _descriptors[tag]);
                return;
            case UblkAbi.IoResultAbort:
                // The device is going away; this tag must not be resubmitted.
                _abortedTags++;
                return;
            default:
                throw new UblkException(
                    $"ublk command for tag {tag} failed: {(result < 0 ? Errno.Describe(-result) : $"unexpected result {result}")}",
                    result < 0 ? -result : 0);
        }
    }

    private void PrepareIoCommand(uint opcode, int tag, int result, ulong bufferAddress)
    {
        var sqe = _ring!.GetSqe();
        sqe->PrepareUringCmd(_setup.CharDevice.Fd, opcode, (ulong)tag);
        var cmd = (UblksrvIoCmd*)IoUringSqe.CommandArea(sqe);
        cmd->QueueId = (ushort)_setup.QueueId;
        cmd->Tag = (ushort)tag;
        cmd->Result = result;
        cmd->Address = bufferAddress;
        if (_setup.AutoBufReg)
        {
            // Where the next request's pages go; with FALLBACK a failed registration delivers the
            // request flagged NEED_REG_BUF (served by user copy) instead of failing it.
            sqe->Address = UblkAbi.AutoBufRegAddress((ushort)tag, UblkAbi.AutoBufRegFallback);
        }
    }

    private void ReleaseRingAndMappings()
    {
        // Closing the ring cancels the commands still parked in the kernel; only then may the
        // eventfd's read buffer and the descriptor mapping go. A backend operation an abandoned
        // request left in flight keeps its buffer (the abandoned request never returns it).
        _ring?.Dispose();
        _dispatcher?.Dispose();
        _waker.Dispose();
        if (_descriptors != null)
        {
            Libc.Munmap((nint)_descriptors, _descriptorBytes);
            _descriptors = null;
        }
    }
}
