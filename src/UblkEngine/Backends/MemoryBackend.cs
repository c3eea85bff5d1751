namespace UblkCsi.Engine.Backends;

/// <summary>
/// A sparse RAM disk: 4 KiB pages are allocated on first write, read as zeros until then, and
/// freed again by discard or write-zeroes of whole pages. Thread-safe: the page table is a
/// two-level array whose slots are filled with compare-and-swap; concurrent writes to the same
/// bytes race as they would on a real disk. Content is lost with the process.
/// </summary>
public sealed class MemoryBackend : IBlockBackend
{
    public const int PageSize = 4096;
    private const int PagesPerChunk = 512;

    private readonly byte[]?[]?[] _chunks;
    private long _allocatedPages;

    public MemoryBackend(long sizeBytes, int logicalBlockSize = 512, int physicalBlockSize = 4096, BlockBackendFeatures features = DefaultFeatures)
    {
        BackendGuards.CheckGeometry(sizeBytes, logicalBlockSize, physicalBlockSize);
        Info = new BlockBackendInfo(sizeBytes, logicalBlockSize, physicalBlockSize, features);
        var pages = (sizeBytes + PageSize - 1) / PageSize;
        _chunks = new byte[]?[(pages + PagesPerChunk - 1) / PagesPerChunk][];
    }

    /// <summary>Everything but read-only: flush and FUA are no-ops here but let tests see them arrive.</summary>
    public const BlockBackendFeatures DefaultFeatures =
        BlockBackendFeatures.VolatileCache | BlockBackendFeatures.Fua | BlockBackendFeatures.Discard | BlockBackendFeatures.WriteZeroes;

    public BlockBackendInfo Info { get; }

    /// <summary>Bytes of page memory currently held.</summary>
    public long AllocatedBytes => Interlocked.Read(ref _allocatedPages) * PageSize;

    public ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        BackendGuards.CheckRange(Info, offset, buffer.Length);
        var destination = buffer.Span;
        while (!destination.IsEmpty)
        {
            var inPage = (int)(offset % PageSize);
            var count = Math.Min(PageSize - inPage, destination.Length);
            var page = TryGetPage(offset / PageSize);
            if (page == null)
            {
                destination[..count].Clear();
            }
            else
            {
                page.AsSpan(inPage, count).CopyTo(destination);
            }

            destination = destination[count..];
            offset += count;
        }

        return ValueTask.CompletedTask;
    }

    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, BlockWriteFlags flags = BlockWriteFlags.None, CancellationToken cancellationToken = default)
    {
        ThrowIfReadOnly();
        BackendGuards.CheckRange(Info, offset, data.Length);
        var source = data.Span;
        while (!source.IsEmpty)
        {
            var inPage = (int)(offset % PageSize);
            var count = Math.Min(PageSize - inPage, source.Length);
            source[..count].CopyTo(GetOrAddPage(offset / PageSize).AsSpan(inPage, count));
            source = source[count..];
            offset += count;
        }

        return ValueTask.CompletedTask;
    }

    public ValueTask FlushAsync(CancellationToken cancellationToken = default) => ValueTask.CompletedTask;

    public ValueTask DiscardAsync(long offset, long length, CancellationToken cancellationToken = default)
    {
        ThrowIfReadOnly();
        BackendGuards.CheckRange(Info, offset, length);
        Zero(offset, length);
        return ValueTask.CompletedTask;
    }

    public ValueTask WriteZeroesAsync(long offset, long length, CancellationToken cancellationToken = default)
    {
        ThrowIfReadOnly();
        BackendGuards.CheckRange(Info, offset, length);
        Zero(offset, length);
        return ValueTask.CompletedTask;
    }

    public ValueTask DisposeAsync()
    {
        Array.Clear(_chunks);
        Interlocked.Exchange(ref _allocatedPages, 0);
        return ValueTask.CompletedTask;
    }

    /// <summary>Whole pages are freed; the partial pages at either end are zeroed in place.</summary>
    private void Zero(long offset, long length)
    {
        var end = offset + length;
        while (offset < end)
        {
            var inPage = (int)(offset % PageSize);
            var count = (int)Math.Min(PageSize - inPage, end - offset);
            var index = offset / PageSize;
            if (count == PageSize)
            {
                FreePage(index);
            }
            else if (TryGetPage(index) is { } page)
            {
                page.AsSpan(inPage, count).Clear();
            }

            offset += count;
        }
    }

    private byte[]? TryGetPage(long index)
    {
        var chunk = Volatile.Read(ref _chunks[index / PagesPerChunk]);
        return chunk == null ? null : Volatile.Read(ref chunk[index % PagesPerChunk]);
    }

    private byte[] GetOrAddPage(long index)
    {
        ref var chunkSlot = ref _chunks[index / PagesPerChunk];
        var chunk = Volatile.Read(ref chunkSlot);
        if (chunk == null)
        {
            var fresh = new byte[]?[PagesPerChunk];
            chunk = Interlocked.CompareExchange(ref chunkSlot, fresh, null) ?? fresh;
        }

        ref var pageSlot = ref chunk[index % PagesPerChunk];
        var page = Volatile.Read(ref pageSlot);
        if (page != null)
        {
            return page;
        }

        // Pinned heap: pages live long and are never moved, so the GC does not copy them while promoting.
        var newPage = GC.AllocateArray<byte>(PageSize, pinned: true);
        var winner = Interlocked.CompareExchange(ref pageSlot, newPage, null);
        if (winner != null)
        {
            return winner;
        }

        Interlocked.Increment(ref _allocatedPages);
        return newPage;
    }

    private void FreePage(long index)
    {
        var chunk = Volatile.Read(ref _chunks[index / PagesPerChunk]);
        if (chunk != null && Interlocked.Exchange(ref chunk[index % PagesPerChunk], null) != null)
        {
            Interlocked.Decrement(ref _allocatedPages);
        }
    }

    private void ThrowIfReadOnly()
    {
        if ((Info.Features & BlockBackendFeatures.ReadOnly) != 0)
        {
            throw new BlockBackendException(BlockBackendException.EROFS, "the memory backend is read-only");
        }
    }
}
