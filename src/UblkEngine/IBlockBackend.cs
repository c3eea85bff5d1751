namespace UblkCsi.Engine;

/// <summary>
/// What a block backend can do beyond read and write. The engine turns these into ublk device
/// parameters, so the kernel only sends the operations the backend declared.
/// </summary>
[Flags]
public enum BlockBackendFeatures
{
    None = 0,

    /// <summary>The backend caches writes: the kernel sends FLUSH, and a returned flush means durable.</summary>
    VolatileCache = 1 << 0,

    /// <summary>The backend honours <see cref="BlockWriteFlags.Fua"/> (forced unit access) on writes.</summary>
    Fua = 1 << 1,

    /// <summary>The backend can discard (deallocate) ranges; discarded ranges read back as zeros.</summary>
    Discard = 1 << 2,

    /// <summary>The backend can zero ranges without a data transfer.</summary>
    WriteZeroes = 1 << 3,

    /// <summary>The device is exposed read-only.</summary>
    ReadOnly = 1 << 4,
}

/// <summary>Per-write flags the kernel passes through.</summary>
[Flags]
public enum BlockWriteFlags
{
    None = 0,

    /// <summary>Forced unit access: the write is durable when it completes.</summary>
    Fua = 1 << 0,
}

/// <summary>Static facts about a backend, read once when a device is created.</summary>
/// <param name="SizeBytes">Device size in bytes; a multiple of <paramref name="LogicalBlockSize"/>.</param>
/// <param name="LogicalBlockSize">Smallest addressable unit (512 or 4096).</param>
/// <param name="PhysicalBlockSize">Preferred write unit, at least the logical block size.</param>
/// <param name="Features">Optional operations the backend supports.</param>
/// <param name="DiscardGranularity">Discard alignment hint in bytes (0: logical block size).</param>
/// <param name="PreferredMaxIoBytes">
/// Largest request the backend serves best, used when <see cref="UblkDeviceOptions.MaxIoBytes"/> is
/// not set (0: no preference). A network backend that answers a request in one round trip sets it so
/// that a 1 MiB I/O is one request, not two.
/// </param>
public readonly record struct BlockBackendInfo(
    long SizeBytes,
    int LogicalBlockSize,
    int PhysicalBlockSize,
    BlockBackendFeatures Features,
    int DiscardGranularity = 0,
    int PreferredMaxIoBytes = 0);

/// <summary>
/// The data path every store implements and the engine serves: asynchronous operations at byte
/// offsets. Offsets and lengths the engine passes are aligned to the logical block size and lie
/// inside the device. A backend may complete synchronously (the engine then commits inline on the
/// queue thread) or later from any thread (the engine wakes the queue thread to commit).
/// Failures are reported by throwing <see cref="BlockBackendException"/> with a Linux errno; any
/// other exception reaches the kernel as EIO.
/// </summary>
public interface IBlockBackend : IAsyncDisposable
{
    BlockBackendInfo Info { get; }

    /// <summary>Fills <paramref name="buffer"/> from <paramref name="offset"/>. Unwritten ranges read as zeros.</summary>
    ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken = default);

    /// <summary>Writes <paramref name="data"/> at <paramref name="offset"/>; with FUA it is durable on return.</summary>
    ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, BlockWriteFlags flags = BlockWriteFlags.None, CancellationToken cancellationToken = default);

    /// <summary>Makes every completed write durable.</summary>
    ValueTask FlushAsync(CancellationToken cancellationToken = default);

    /// <summary>Deallocates a range; it reads back as zeros.</summary>
    ValueTask DiscardAsync(long offset, long length, CancellationToken cancellationToken = default);

    /// <summary>Zeroes a range.</summary>
    ValueTask WriteZeroesAsync(long offset, long length, CancellationToken cancellationToken = default);
}

/// <summary>A backend failure carrying the Linux errno the kernel should see (positive value, e.g. 5 for EIO).</summary>
public sealed class BlockBackendException : IOException
{
    public BlockBackendException(int errno, string message, Exception? inner = null)
        : base(message, inner)
    {
        Errno = errno;
    }

    /// <summary>Positive Linux errno (EIO 5, ENOSPC 28, EROFS 30, EINVAL 22, ...).</summary>
    public int Errno { get; }

    public const int EIO = 5;
    public const int EINVAL = 22;
    public const int ENOSPC = 28;
    public const int EROFS = 30;
    public const int EOPNOTSUPP = 95;
}
