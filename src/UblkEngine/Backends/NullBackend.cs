namespace UblkCsi.Engine.Backends;

/// <summary>
/// Reads return zeros, writes and everything else succeed and are forgotten. Declares every
/// optional feature, so the kernel sends FLUSH, FUA, DISCARD and WRITE_ZEROES. For tests and for
/// measuring the engine without a store.
/// </summary>
public sealed class NullBackend : IBlockBackend
{
    public NullBackend(long sizeBytes, int logicalBlockSize = 512, int physicalBlockSize = 4096)
    {
        BackendGuards.CheckGeometry(sizeBytes, logicalBlockSize, physicalBlockSize);
        Info = new BlockBackendInfo(
            sizeBytes,
            logicalBlockSize,
            physicalBlockSize,
            BlockBackendFeatures.VolatileCache | BlockBackendFeatures.Fua | BlockBackendFeatures.Discard | BlockBackendFeatures.WriteZeroes);
    }

    public BlockBackendInfo Info { get; }

    public ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        BackendGuards.CheckRange(Info, offset, buffer.Length);
        buffer.Span.Clear();
        return ValueTask.CompletedTask;
    }

    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, BlockWriteFlags flags = BlockWriteFlags.None, CancellationToken cancellationToken = default)
    {
        BackendGuards.CheckRange(Info, offset, data.Length);
        return ValueTask.CompletedTask;
    }

    public ValueTask FlushAsync(CancellationToken cancellationToken = default) => ValueTask.CompletedTask;

    public ValueTask DiscardAsync(long offset, long length, CancellationToken cancellationToken = default)
    {
        BackendGuards.CheckRange(Info, offset, length);
        return ValueTask.CompletedTask;
    }

    public ValueTask WriteZeroesAsync(long offset, long length, CancellationToken cancellationToken = default)
    {
        BackendGuards.CheckRange(Info, offset, length);
        return ValueTask.CompletedTask;
    }

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}
