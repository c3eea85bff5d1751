using System.Runtime.InteropServices;
using UblkCsi.Engine.Interop;
using UblkCsi.Linux;

namespace UblkCsi.Engine.IoUring;

/// <summary>
/// Lets any thread wake a thread blocked in io_uring_enter: the owner keeps a READ of an eventfd
/// armed on its ring; <see cref="Signal"/> writes the eventfd, which completes that read.
/// A pending flag collapses a burst of signals into one write system call.
/// </summary>
internal sealed unsafe class EventFdWaker : IDisposable
{
    private readonly FileDescriptorHandle _eventFd;
    private readonly ulong* _readBuffer;
    private int _signalPending;

    public EventFdWaker()
    {
        // Blocking eventfd on purpose: io_uring then polls it instead of returning EAGAIN.
        var fd = Libc.EventFd(0, Libc.EFD_CLOEXEC);
        if (fd < 0)
        {
            throw new IoUringException("eventfd", Libc.LastErrno);
        }

        _eventFd = new FileDescriptorHandle(fd);
        _readBuffer = (ulong*)NativeMemory.AlignedAlloc(sizeof(ulong), sizeof(ulong));
    }

    /// <summary>Wakes the owner. Safe from any thread; costs a system call only when no wake-up is pending.</summary>
    public void Signal()
    {
        if (Interlocked.Exchange(ref _signalPending, 1) != 0)
        {
            return;
        }

        // A backend may complete after its queue shut down: the reference keeps the descriptor
        // number from being closed (and reused by an unrelated file) while we write to it.
        var added = false;
        try
        {
            _eventFd.DangerousAddRef(ref added);
            ulong one = 1;
            while (Libc.Write(_eventFd.Fd, &one, sizeof(ulong)) < 0)
            {
                var errno = Libc.LastErrno;
                if (errno != Errno.EINTR)
                {
                    throw new IoUringException("eventfd write", errno);
                }
            }
        }
        catch (ObjectDisposedException)
        {
            // The owner is gone; nobody is left to wake.
        }
        finally
        {
            if (added)
            {
                _eventFd.DangerousRelease();
            }
        }
    }

    /// <summary>Queues the READ whose completion is the wake-up. Owner thread only.</summary>
    public void Arm(Ring ring, ulong userData) =>
        ring.GetSqe()->PrepareRead(_eventFd.Fd, _readBuffer, sizeof(ulong), 0, userData);

    /// <summary>
    /// Called by the owner when the READ completed, before it looks for work: a signal that races
    /// with this reset either sees the flag cleared (and writes again) or its work is found by the
    /// owner's scan that follows.
    /// </summary>
    public void Acknowledge(Ring ring, ulong userData)
    {
        Interlocked.Exchange(ref _signalPending, 0);
        Arm(ring, userData);
    }

    /// <summary>Dispose the ring that had the READ armed first, so the kernel no longer targets the buffer.</summary>
    public void Dispose()
    {
        _eventFd.Dispose();
        NativeMemory.AlignedFree(_readBuffer);
    }
}
