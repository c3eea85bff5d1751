using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using UblkCsi.Engine.Interop;
using UblkCsi.Linux;

namespace UblkCsi.Engine.IoUring;

/// <summary>
/// One io_uring instance built from raw system calls: the shared rings are mapped once and driven
/// with acquire/release ordering on the head and tail words. Not thread-safe: one owner thread
/// prepares, submits and reaps (a queue thread, or the control plane under its lock).
/// With IORING_SETUP_DEFER_TASKRUN the kernel posts most completions only while the owner waits
/// in <see cref="SubmitAndWait"/> with a count above zero (GETEVENTS): a plain <see cref="Submit"/>
/// followed by <see cref="TryGetCompletion"/> may find nothing yet.
/// </summary>
internal sealed unsafe class Ring : IDisposable
{
    private readonly FileDescriptorHandle _ringFd;
    private readonly int _fd;

    private readonly byte* _sqRing;
    private readonly nuint _sqRingSize;
    private readonly byte* _cqRing;
    private readonly nuint _cqRingSize;
    private readonly byte* _sqes;
    private readonly nuint _sqesSize;
    private readonly int _sqeShift;

    private readonly uint* _sqHead;
    private readonly uint* _sqTail;
    private readonly uint _sqMask;
    private readonly uint* _cqHead;
    private readonly uint* _cqTail;
    private readonly uint _cqMask;
    private readonly IoUringCqe* _cqes;

    // SQEs handed out but not yet published to the kernel's tail.
    private uint _sqeTail;
    private bool _disposed;

    private Ring(int fd, in IoUringParams p, IoUringSetupFlags flags)
    {
        _ringFd = new FileDescriptorHandle(fd);
        _fd = fd;
        SqEntries = p.SqEntries;
        CqEntries = p.CqEntries;
        Features = (IoUringFeatures)p.Features;
        SetupFlags = flags;
        _sqeShift = (flags & IoUringSetupFlags.Sqe128) != 0 ? 7 : 6;

        _sqRingSize = p.SqOff.Array + (p.SqEntries * sizeof(uint));
        _cqRingSize = p.CqOff.Cqes + (p.CqEntries * (nuint)sizeof(IoUringCqe));
        var singleMmap = (Features & IoUringFeatures.SingleMmap) != 0;
        if (singleMmap)
        {
            _sqRingSize = _cqRingSize = Math.Max(_sqRingSize, _cqRingSize);
        }

        try
        {
            _sqRing = Map(_sqRingSize, IoUringConstants.OffSqRing, "SQ ring");
            _cqRing = singleMmap ? _sqRing : Map(_cqRingSize, IoUringConstants.OffCqRing, "CQ ring");
            _sqesSize = (nuint)p.SqEntries << _sqeShift;
            _sqes = Map(_sqesSize, IoUringConstants.OffSqes, "SQE array");
        }
        catch
        {
            Unmap();
            _ringFd.Dispose();
            throw;
        }

        _sqHead = (uint*)(_sqRing + p.SqOff.Head);
        _sqTail = (uint*)(_sqRing + p.SqOff.Tail);
        _sqMask = *(uint*)(_sqRing + p.SqOff.RingMask);
        _cqHead = (uint*)(_cqRing + p.CqOff.Head);
        _cqTail = (uint*)(_cqRing + p.CqOff.Tail);
        _cqMask = *(uint*)(_cqRing + p.CqOff.RingMask);
        _cqes = (IoUringCqe*)(_cqRing + p.CqOff.Cqes);

        // Identity indirection: SQE slot i is always array entry i, so the array is written once.
        var array = (uint*)(_sqRing + p.SqOff.Array);
        for (uint i = 0; i < p.SqEntries; i++)
        {
            array[i] = i;
        }

        _sqeTail = Volatile.Read(ref *_sqTail);
    }

    public uint SqEntries { get; }

    public uint CqEntries { get; }

    public IoUringFeatures Features { get; }

    public IoUringSetupFlags SetupFlags { get; }

    /// <summary>The ring's own file descriptor.</summary>
    public int Fd => _fd;

    /// <summary>SQEs prepared but not yet consumed by the kernel.</summary>
    public uint PendingSubmissions => _sqeTail - Volatile.Read(ref *_sqHead);

    /// <summary>Completions waiting to be reaped.</summary>
    public uint ReadyCompletions => Volatile.Read(ref *_cqTail) - *_cqHead;

    /// <summary>
    /// Creates a ring with at least <paramref name="entries"/> SQ slots (the kernel rounds up to a
    /// power of two). <paramref name="cqEntries"/> of 0 lets the kernel pick twice the SQ size.
    /// </summary>
    public static Ring Create(uint entries, IoUringSetupFlags flags = IoUringSetupFlags.None, uint cqEntries = 0)
    {
        ArgumentOutOfRangeException.ThrowIfZero(entries);
        if (cqEntries != 0)
        {
            flags |= IoUringSetupFlags.CqSize;
        }

        IoUringParams p = default;
        p.Flags = (uint)flags;
        p.CqEntries = cqEntries;
        var fd = Libc.Syscall(Libc.SYS_io_uring_setup, entries, (long)&p, 0, 0, 0, 0);
        if (fd < 0)
        {
            throw new IoUringException("io_uring_setup", Libc.LastErrno);
        }

        return new Ring((int)fd, p, flags);
    }

    /// <summary>
    /// Creates a ring with <paramref name="preferred"/> flags, dropping the optional ones an older
    /// kernel rejects with EINVAL: DEFER_TASKRUN (6.1) alone first, then all of them (SINGLE_ISSUER
    /// 6.0, COOP_TASKRUN 5.19).
    /// </summary>
    public static Ring CreateWithFallback(uint entries, IoUringSetupFlags required, IoUringSetupFlags preferred, uint cqEntries = 0)
    {
        try
        {
            return Create(entries, required | preferred, cqEntries);
        }
        catch (IoUringException e) when (e.Errno == Errno.EINVAL && (preferred & IoUringSetupFlags.DeferTaskRun) != 0)
        {
            return CreateWithFallback(entries, required, preferred & ~IoUringSetupFlags.DeferTaskRun, cqEntries);
        }
        catch (IoUringException e) when (e.Errno == Errno.EINVAL && preferred != IoUringSetupFlags.None)
        {
            return Create(entries, required, cqEntries);
        }
    }

    /// <summary>A zeroed SQE, or null when every slot holds an unsubmitted entry.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public IoUringSqe* TryGetSqe()
    {
        var head = Volatile.Read(ref *_sqHead);
        if (_sqeTail - head >= SqEntries)
        {
            return null;
        }

        var sqe = (IoUringSqe*)(_sqes + ((nuint)(_sqeTail & _sqMask) << _sqeShift));
        new Span<byte>(sqe, 1 << _sqeShift).Clear();
        _sqeTail++;
        return sqe;
    }

    /// <summary>A zeroed SQE; when the ring is full the pending entries are submitted first.</summary>
    public IoUringSqe* GetSqe()
    {
        var sqe = TryGetSqe();
        while (sqe == null)
        {
            Submit();
            sqe = TryGetSqe();
        }

        return sqe;
    }

    /// <summary>Publishes prepared SQEs and enters the kernel without waiting. Returns how many it consumed.</summary>
    public int Submit() => SubmitAndWait(0);

    /// <summary>
    /// Publishes prepared SQEs and waits until at least <paramref name="minComplete"/> completions
    /// are ready. May return earlier when a signal interrupts the wait after submission; callers
    /// reap what is there and call again. EINTR before submission is retried here.
    /// </summary>
    public int SubmitAndWait(uint minComplete)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        while (true)
        {
            // Release: the SQE contents become visible to the kernel before the new tail.
            Volatile.Write(ref *_sqTail, _sqeTail);
            var toSubmit = PendingSubmissions;
            if (toSubmit == 0 && (minComplete == 0 || ReadyCompletions >= minComplete))
            {
                return 0;
            }

            var enterFlags = minComplete > 0 ? IoUringConstants.EnterGetEvents : 0;
            var result = Libc.Syscall(Libc.SYS_io_uring_enter, _fd, toSubmit, minComplete, enterFlags, 0, 0);
            if (result >= 0)
            {
                return (int)result;
            }

            var errno = Libc.LastErrno;
            switch (errno)
            {
                case Errno.EINTR:
                    // The runtime uses signals (GC suspension); an interrupted wait is normal.
                    if (minComplete > 0 && ReadyCompletions >= minComplete)
                    {
                        return 0;
                    }

                    continue;
                case Errno.EAGAIN:
                case Errno.EBUSY:
                    // The kernel is short of resources or the CQ backlog is full: the caller must reap first.
                    if (ReadyCompletions > 0)
                    {
                        return 0;
                    }

                    Thread.Yield();
                    continue;
                default:
                    throw new IoUringException("io_uring_enter", errno);
            }
        }
    }

    /// <summary>Takes the oldest completion, if any. Allocation-free; one CQE per call.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TryGetCompletion(out IoUringCqe cqe)
    {
        var head = *_cqHead;
        // Acquire: the CQE is fully written before we observe the tail that covers it.
        if (head == Volatile.Read(ref *_cqTail))
        {
            cqe = default;
            return false;
        }

        cqe = _cqes[head & _cqMask];
        // Release: the kernel may reuse the slot only after we copied it out.
        Volatile.Write(ref *_cqHead, head + 1);
        return true;
    }

    /// <summary>Waits for and returns the next completion.</summary>
    public IoUringCqe WaitCompletion()
    {
        IoUringCqe cqe;
        while (!TryGetCompletion(out cqe))
        {
            SubmitAndWait(1);
        }

        return cqe;
    }

    /// <summary>
    /// Registers an empty fixed-buffer table of <paramref name="slots"/> entries (IORING_REGISTER_BUFFERS2
    /// with IORING_RSRC_REGISTER_SPARSE), which the ublk driver fills with request buffers under
    /// UBLK_F_AUTO_BUF_REG. Call from the ring's submitter thread, before the first submission that needs it.
    /// </summary>
    public void RegisterSparseBuffers(uint slots)
    {
        ArgumentOutOfRangeException.ThrowIfZero(slots);
        IoUringRsrcRegister request = default;
        request.Count = slots;
        request.Flags = IoUringConstants.RsrcRegisterSparse;
        var result = Libc.Syscall(Libc.SYS_io_uring_register, _fd, IoUringConstants.RegisterBuffers2, (long)&request, sizeof(IoUringRsrcRegister), 0, 0);
        if (result < 0)
        {
            throw new IoUringException($"io_uring_register(IORING_REGISTER_BUFFERS2, sparse, {slots} slots)", Libc.LastErrno);
        }
    }

    /// <summary>
    /// Registers one user buffer as slot 0 of the fixed-buffer table (IORING_REGISTER_BUFFERS). The
    /// engine never does (the kernel registers request pages, <see cref="RegisterSparseBuffers"/>);
    /// tests use it to move real data through the fixed-buffer operations on this host.
    /// </summary>
    internal void RegisterBuffer(void* address, nuint length)
    {
        var segment = new Libc.IoVec { Base = (byte*)address, Length = length };
        var result = Libc.Syscall(Libc.SYS_io_uring_register, _fd, IoUringConstants.RegisterBuffers, (long)&segment, 1, 0, 0);
        if (result < 0)
        {
            throw new IoUringException("io_uring_register(IORING_REGISTER_BUFFERS)", Libc.LastErrno);
        }
    }

    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        Unmap();
        _ringFd.Dispose();
    }

    private byte* Map(nuint size, long offset, string what)
    {
        var address = Libc.Mmap(0, size, Libc.PROT_READ | Libc.PROT_WRITE, Libc.MAP_SHARED | Libc.MAP_POPULATE, _fd, offset);
        if (address == Libc.MapFailed)
        {
            throw new IoUringException($"mmap of the io_uring {what}", Libc.LastErrno);
        }

        return (byte*)address;
    }

    private void Unmap()
    {
        if (_sqes != null)
        {
            Libc.Munmap((nint)_sqes, _sqesSize);
        }

        if (_cqRing != null && _cqRing != _sqRing)
        {
            Libc.Munmap((nint)_cqRing, _cqRingSize);
        }

        if (_sqRing != null)
        {
            Libc.Munmap((nint)_sqRing, _sqRingSize);
        }
    }
}
