using System.Net.Sockets;
using UblkCsi.Linux;
using UblkCsi.Stores.Internal;

namespace UblkCsi.Stores.Nbd;

/// <summary>
/// The receive side of a plain (not TLS) connection as a stream whose reads block the calling thread
/// in poll(2) and then take what the socket holds. The connection's receive loop runs on a thread of
/// its own over it, so every await in the loop completes synchronously and the kernel wakes that
/// thread directly when a reply arrives: no hop through .NET's epoll thread and the thread pool per
/// read (under emulation every thread wake-up is expensive).
/// </summary>
internal sealed unsafe class NbdSocketReader(Socket socket, string server) : Stream
{
    /// <summary>How often a thread waiting for replies checks whether the socket was closed under it.</summary>
    private const int PollMilliseconds = 500;

    public override bool CanRead => true;

    public override bool CanSeek => false;

    public override bool CanWrite => false;

    public override long Length => throw new NotSupportedException();

    public override long Position
    {
        get => throw new NotSupportedException();
        set => throw new NotSupportedException();
    }

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) =>
        new(Read(buffer.Span));

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    /// <summary>Blocks until bytes arrive; 0 when the server closed the connection.</summary>
    public override int Read(Span<byte> buffer)
    {
        var handle = socket.SafeHandle;
        var added = false;
        try
        {
            // Throws ObjectDisposedException once the connection closed the socket; holding the
            // reference keeps the descriptor number from being reused while this thread uses it.
            handle.DangerousAddRef(ref added);
            var fd = (int)handle.DangerousGetHandle();
            fixed (byte* start = buffer)
            {
                while (true)
                {
                    var received = Libc.Recv(fd, start, (nuint)buffer.Length, Libc.MSG_DONTWAIT);
                    if (received >= 0)
                    {
                        return (int)received;
                    }

                    var errno = Libc.LastErrno;
                    if (errno == LinuxFile.EAGAIN)
                    {
                        Wait(fd, handle);
                    }
                    else if (errno != LinuxFile.EINTR)
                    {
                        throw new IOException($"connection to {server} lost while receiving: recv failed with errno {errno}");
                    }
                }
            }
        }
        finally
        {
            if (added)
            {
                handle.DangerousRelease();
            }
        }
    }

    public override void Flush()
    {
    }

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    private void Wait(int fd, SafeSocketHandle handle)
    {
        var poll = new Libc.PollFd { Fd = fd, Events = Libc.POLLIN };
        if (Libc.Poll(&poll, 1, PollMilliseconds) < 0 && Libc.LastErrno != LinuxFile.EINTR)
        {
            throw new IOException($"connection to {server} lost while receiving: poll failed with errno {Libc.LastErrno}");
        }

        ObjectDisposedException.ThrowIf(handle.IsClosed, this);
    }
}
