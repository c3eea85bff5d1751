namespace UblkCsi.Engine.Backends;

/// <summary>Operation counts of a <see cref="CountingBackend"/> at one moment.</summary>
public readonly record struct BackendOperationCounts(
    long Reads,
    long Writes,
    long FuaWrites,
    long Flushes,
    long Discards,
    long WriteZeroes,
    long BytesRead,
    long BytesWritten)
{
    public override string ToString() =>
        $"reads={Reads} writes={Writes} fua_writes={FuaWrites} flushes={Flushes} discards={Discards} write_zeroes={WriteZeroes} bytes_read={BytesRead} bytes_written={BytesWritten}";
}

/// <summary>
/// Wraps any backend and counts the operations that reach it (FLUSH and FUA writes included),
/// so tests and <c>ublk-csi attach --stats</c> can see what the kernel sent. Adds no allocation.
/// </summary>
public sealed class CountingBackend(IBlockBackend inner) : IBlockBackend
{
    private long _reads;
    private long _writes;
    private long _fuaWrites;
    private long _flushes;
    private long _discards;
    private long _writeZeroes;
    private long _bytesRead;
    private long _bytesWritten;

    public IBlockBackend Inner { get; } = inner ?? throw new ArgumentNullException(nameof(inner));

    public BlockBackendInfo Info => Inner.Info;

    public BackendOperationCounts Counts => new(
        Interlocked.Read(ref _reads),
        Interlocked.Read(ref _writes),
        Interlocked.Read(ref _fuaWrites),
        Interlocked.Read(ref _flushes),
        Interlocked.Read(ref _discards),
        Interlocked.Read(ref _writeZeroes),
        Interlocked.Read(ref _bytesRead),
        Interlocked.Read(ref _bytesWritten));

    public ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        Interlocked.Increment(ref _reads);
        Interlocked.Add(ref _bytesRead, buffer.Length);
        return Inner.ReadAsync(offset, buffer, cancellationToken);
    }

    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, BlockWriteFlags flags = BlockWriteFlags.None, CancellationToken cancellationToken = default)
    {
        Interlocked.Increment(ref _writes);
        if ((flags & BlockWriteFlags.Fua) != 0)
        {
            Interlocked.Increment(ref _fuaWrites);
        }

        Interlocked.Add(ref _bytesWritten, data.Length);
        return Inner.WriteAsync(offset, data, flags, cancellationToken);
    }

    public ValueTask FlushAsync(CancellationToken cancellationToken = default)
    {
        Interlocked.Increment(ref _flushes);
        return Inner.FlushAsync(cancellationToken);
    }

    public ValueTask DiscardAsync(long offset, long length, CancellationToken cancellationToken = default)
    {
        Interlocked.Increment(ref _discards);
        return Inner.DiscardAsync(offset, length, cancellationToken);
    }

    public ValueTask WriteZeroesAsync(long offset, long length, CancellationToken cancellationToken = default)
    {
        Interlocked.Increment(ref _writeZeroes);
        return Inner.WriteZeroesAsync(offset, length, cancellationToken);
    }

    public ValueTask DisposeAsync() => Inner.DisposeAsync();
}
