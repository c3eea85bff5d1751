using UblkCsi.Engine.Abi;
using UblkCsi.Engine.Interop;
using UblkCsi.Linux;

namespace UblkCsi.Engine.Device;

/// <summary>
/// Moves request data in USER_COPY mode: pread on /dev/ublkcN returns a WRITE request's data,
/// pwrite fills a READ request, at the per-(queue, tag) window the kernel defines. Calls are made
/// on the queue thread while it owns the tag; short transfers are continued until complete.
/// </summary>
internal sealed unsafe class UserCopyChannel(int fd, int queueId)
{
    public int QueueId { get; } = queueId;

    /// <summary>Copies the WRITE payload of <paramref name="tag"/> into <paramref name="destination"/>. Returns 0 or a negative errno.</summary>
    public int ReadRequestData(int tag, byte* destination, int length) => Transfer(&Libc.Pread, tag, destination, length);

    /// <summary>Copies <paramref name="source"/> into the READ request of <paramref name="tag"/>. Returns 0 or a negative errno.</summary>
    public int WriteRequestData(int tag, byte* source, int length) => Transfer(&Libc.Pwrite, tag, source, length);

    /// <summary>Copies <paramref name="source"/> into the READ request of <paramref name="tag"/>, <paramref name="offset"/> bytes in. Any thread may call it while the request is the server's.</summary>
    public int WriteRequestData(int tag, int offset, byte* source, int length) => Transfer(&Libc.Pwrite, tag, source, length, offset);

    private int Transfer(delegate*<int, void*, nuint, long, nint> io, int tag, byte* buffer, int length, int offset = 0)
    {
        var window = UblkAbi.UserCopyOffset(QueueId, tag) + offset;
        var done = 0;
        while (done < length)
        {
            var n = io(fd, buffer + done, (nuint)(length - done), window + done);
            if (n > 0)
            {
                done += (int)n;
                continue;
            }

            if (n < 0 && Libc.LastErrno == Errno.EINTR)
            {
                continue;
            }

            return n == 0 ? -Errno.EIO : -Libc.LastErrno;
        }

        return 0;
    }
}
