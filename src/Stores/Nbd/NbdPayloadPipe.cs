using System.Net.Sockets;
using Microsoft.Win32.SafeHandles;
using UblkCsi.Engine.Buffers;
using UblkCsi.Linux;
using UblkCsi.Stores.Internal;

namespace UblkCsi.Stores.Nbd;

/// <summary>
/// Puts a large WRITE's payload into the socket without copying it: vmsplice(2) places references to
/// the payload's pages in a pipe and splice(2) hands them on to the socket, so the bytes are copied
/// once, when the receiver reads them, where send(2) copies them into the socket first. Measured in
/// <c>bench-nbd-store</c>: a 1 MiB write through the engine is otherwise copied four times (ublk char
/// device, socket, server receive, server write) against the kernel client's three.
/// <para>
/// Safe only for memory that neither moves nor changes while the socket may still read it: engine
/// <see cref="IoBuffer"/>s (native memory), which the engine leaves untouched until the request is
/// answered, and a server answers a WRITE only after it has read its payload. Managed arrays, which the
/// GC may move, are sent by copy. One pipe per connection, used by whoever holds the sender's writer
/// role; the pipe's bytes are part of the stream and go out before anything sent after them.
/// </para>
/// <para>
/// The server's answer is what says it has read the pages. A request whose connection is lost before
/// that answer has its buffer retired (<see cref="RetireIfShared"/>): the old socket, or on loopback
/// the server's receive queue, may still read the pages after the request completed elsewhere.
/// </para>
/// </summary>
internal sealed unsafe class NbdPayloadPipe : IDisposable
{
    /// <summary>A 1 MiB payload fits whole (the default limit of fs.pipe-max-size for unprivileged users).</summary>
    private const int Capacity = 1 << 20;

    private readonly SafeFileHandle _read;
    private readonly SafeFileHandle _write;
    private readonly SafeSocketHandle _socket;
    private bool _socketNonBlocking;

    private NbdPayloadPipe(SafeFileHandle read, SafeFileHandle write, SafeSocketHandle socket)
    {
        _read = read;
        _write = write;
        _socket = socket;
    }

    /// <summary>Bytes in the pipe that the socket has not taken yet.</summary>
    public int Buffered { get; private set; }

    /// <summary>A pipe for <paramref name="socket"/>, or null when none can be made (the sender copies then).</summary>
    public static NbdPayloadPipe? TryCreate(SafeSocketHandle socket)
    {
        var fds = stackalloc int[2];
        if (Libc.Pipe2(fds, Libc.O_CLOEXEC | Libc.O_NONBLOCK) != 0)
        {
            return null;
        }

        var pipe = new NbdPayloadPipe(new SafeFileHandle(fds[0], ownsHandle: true), new SafeFileHandle(fds[1], ownsHandle: true), socket);
        // A smaller pipe (a lowered fs.pipe-max-size) still works, in more steps.
        _ = Libc.Fcntl(pipe._write, Libc.F_SETPIPE_SZ, Capacity);
        return pipe;
    }

    /// <summary>
    /// True when <paramref name="payload"/> can go through the pipe: native engine memory, and a
    /// socket in non-blocking mode (a plain connection's is, once negotiated), so that a full
    /// socket answers EAGAIN instead of blocking an engine queue thread.
    /// </summary>
    public bool CanCarry(ReadOnlyMemory<byte> payload)
    {
        if (!System.Runtime.InteropServices.MemoryMarshal.TryGetMemoryManager<byte, IoBuffer>(payload, out _))
        {
            return false;
        }

        if (!_socketNonBlocking)
        {
            var flags = Libc.Fcntl(_socket, Libc.F_GETFL, 0);
            _socketNonBlocking = flags >= 0 && (flags & Libc.O_NONBLOCK) != 0;
        }

        return _socketNonBlocking;
    }

    /// <summary>Pipe empty: references as much of <paramref name="payload"/> as the pipe holds; returns the bytes taken.</summary>
    public int Fill(ReadOnlySpan<byte> payload)
    {
        fixed (byte* start = payload)
        {
            var segment = new Libc.IoVec { Base = start, Length = (nuint)payload.Length };
            while (true)
            {
                var taken = Libc.Vmsplice(_write, &segment, 1, Libc.SPLICE_F_NONBLOCK);
                if (taken > 0)
                {
                    Buffered += (int)taken;
                    return (int)taken;
                }

                ThrowUnlessRetry(taken, "vmsplice");
            }
        }
    }

    /// <summary>Moves buffered bytes into the socket; returns how many, 0 when the socket is full.</summary>
    public int Drain()
    {
        while (true)
        {
            var moved = Libc.Splice(_read, null, _socket, null, (nuint)Buffered, Libc.SPLICE_F_NONBLOCK);
            if (moved > 0)
            {
                Buffered -= (int)moved;
                return (int)moved;
            }

            if (moved < 0 && Libc.LastErrno == LinuxFile.EAGAIN)
            {
                return 0;
            }

            ThrowUnlessRetry(moved, "splice");
        }
    }

    /// <summary>
    /// Connection lost before <paramref name="request"/> was answered: if its payload went out by
    /// reference, its engine buffer is never reused (<see cref="IoBuffer.Retire"/>), so a server
    /// reading the old stream later gets this request's bytes and never a later request's.
    /// </summary>
    public static void RetireIfShared(NbdRequest request)
    {
        if (request.PayloadByReference && System.Runtime.InteropServices.MemoryMarshal.TryGetMemoryManager<byte, IoBuffer>(request.WriteData, out var buffer))
        {
            buffer.Retire();
        }
    }

    public void Dispose()
    {
        _read.Dispose();
        _write.Dispose();
    }

    private static void ThrowUnlessRetry(nint result, string call)
    {
        var errno = result < 0 ? Libc.LastErrno : 0;
        if (errno != LinuxFile.EINTR)
        {
            throw new IOException($"{call} of a WRITE payload failed with errno {errno}");
        }
    }
}
