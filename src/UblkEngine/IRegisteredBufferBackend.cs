namespace UblkCsi.Engine;

/// <summary>
/// A request's own data pages, which the kernel registered in the fixed-buffer table of the queue's
/// io_uring (UBLK_F_AUTO_BUF_REG, Linux 6.16+) at the request's tag. Valid only during the backend
/// call that received it and only on that queue's ring (<see cref="Ring"/>): a backend passes it to
/// <see cref="QueueIo.TryReadRegistered"/> or <see cref="QueueIo.TryWriteRegistered"/>, and the data
/// moves between the store and the request's pages with no copy through user memory.
/// </summary>
public readonly struct RegisteredBuffer
{
    /// <param name="baseAddress">Where the slot's buffer starts in the table's address space: 0 for a request buffer the kernel registered, the user address for one registered from user memory (tests).</param>
    internal RegisteredBuffer(QueueIo ring, ushort index, int length, ulong baseAddress = 0)
    {
        Ring = ring;
        Index = index;
        Length = length;
        BaseAddress = baseAddress;
    }

    /// <summary>The queue ring whose buffer table holds the pages; submit the I/O there.</summary>
    public QueueIo Ring { get; }

    /// <summary>Bytes of the request.</summary>
    public int Length { get; }

    /// <summary>Slot in the ring's fixed-buffer table (the request's tag).</summary>
    internal ushort Index { get; }

    /// <summary>Address of the buffer's first byte as fixed-buffer operations name it (0 for kernel-registered request pages).</summary>
    internal ulong BaseAddress { get; }

    /// <summary>
    /// Copies <paramref name="data"/> into the request's pages, <paramref name="offset"/> bytes in,
    /// through the ublk char device (USER_COPY, which zero-copy devices keep): for the few bytes a
    /// backend already holds in user memory, from any thread. Throws <see cref="BlockBackendException"/>.
    /// </summary>
    public unsafe void CopyIn(int offset, ReadOnlySpan<byte> data)
    {
        if (offset < 0 || data.Length > Length - offset)
        {
            throw new ArgumentOutOfRangeException(nameof(offset), $"[{offset}, +{data.Length}) lies outside the request's {Length} bytes");
        }

        var channel = Ring.UserCopy ?? throw new InvalidOperationException("the queue has no user-copy channel");
        fixed (byte* source = data)
        {
            var result = channel.WriteRequestData(Index, offset, source, data.Length);
            if (result < 0)
            {
                throw new BlockBackendException(-result, $"copying {data.Length} bytes into the request at {offset} failed: {Interop.Errno.Describe(-result)}");
            }
        }
    }
}

/// <summary>
/// A backend that can serve reads and writes straight from the request's registered pages
/// (<see cref="RegisteredBuffer"/>). The engine asks the kernel for UBLK_F_AUTO_BUF_REG only when
/// <see cref="ServesRegisteredBuffers"/> is true (e.g. the file store with O_DIRECT); other backends,
/// and a request this one declines, get the data copied through a user buffer as always.
/// </summary>
public interface IRegisteredBufferBackend : IBlockBackend
{
    /// <summary>Whether this backend, as opened, can serve registered buffers at all. Read once per device.</summary>
    bool ServesRegisteredBuffers { get; }

    /// <summary>
    /// Starts reading <paramref name="buffer"/>.Length bytes at <paramref name="offset"/> into the
    /// request's pages. False when this request cannot be served that way (unaligned, no free ring
    /// slot, throttled): the engine then calls <see cref="IBlockBackend.ReadAsync"/> with a copy buffer.
    /// </summary>
    bool TryReadRegistered(long offset, RegisteredBuffer buffer, CancellationToken cancellationToken, out ValueTask pending);

    /// <summary>Starts writing the request's pages at <paramref name="offset"/>; as <see cref="TryReadRegistered"/>.</summary>
    bool TryWriteRegistered(long offset, RegisteredBuffer buffer, BlockWriteFlags flags, CancellationToken cancellationToken, out ValueTask pending);
}
