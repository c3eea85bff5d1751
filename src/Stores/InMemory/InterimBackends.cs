using UblkCsi.Engine;

namespace UblkCsi.Stores.InMemory;

// Stand-ins until the engine's NullBackend and MemoryBackend land in src/UblkEngine; the providers
// switch to those and this file goes away.

/// <summary>Sparse memory content: 64 KiB pages allocated on first write, freed by discard.</summary>
internal sealed class InterimMemoryBackend(long sizeBytes) : IBlockBackend
{
    private const int PageShift = 16;
    private const int PageSize = 1 << PageShift;
    private readonly byte[]?[] _pages = new byte[]?[(sizeBytes + PageSize - 1) >> PageShift];

    public BlockBackendInfo Info { get; } = new(sizeBytes, 512, 4096,
        BlockBackendFeatures.Discard | BlockBackendFeatures.WriteZeroes | BlockBackendFeatures.VolatileCache | BlockBackendFeatures.Fua, 4096);

    public ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        var span = buffer.Span;
        while (span.Length > 0)
        {
            var (page, inPage, n) = Locate(offset, span.Length);
            var source = Volatile.Read(ref _pages[page]);
            if (source is null)
            {
                span[..n].Clear();
            }
            else
            {
                source.AsSpan(inPage, n).CopyTo(span);
            }

            span = span[n..];
            offset += n;
        }

        return default;
    }

    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, BlockWriteFlags flags = BlockWriteFlags.None, CancellationToken cancellationToken = default)
    {
        var span = data.Span;
        while (span.Length > 0)
        {
            var (page, inPage, n) = Locate(offset, span.Length);
            var target = Volatile.Read(ref _pages[page]);
            if (target is null)
            {
                Interlocked.CompareExchange(ref _pages[page], new byte[PageSize], null);
                target = _pages[page]!;
            }

            span[..n].CopyTo(target.AsSpan(inPage));
            span = span[n..];
            offset += n;
        }

        return default;
    }

    public ValueTask FlushAsync(CancellationToken cancellationToken = default) => default;

    public ValueTask DiscardAsync(long offset, long length, CancellationToken cancellationToken = default)
    {
        while (length > 0)
        {
            var (page, inPage, n) = Locate(offset, (int)Math.Min(length, int.MaxValue));
            if (n == PageSize)
            {
                Volatile.Write(ref _pages[page], null);
            }
            else
            {
                Volatile.Read(ref _pages[page])?.AsSpan(inPage, n).Clear();
            }

            offset += n;
            length -= n;
        }

        return default;
    }

    public ValueTask WriteZeroesAsync(long offset, long length, CancellationToken cancellationToken = default) =>
        DiscardAsync(offset, length, cancellationToken);

    public ValueTask DisposeAsync()
    {
        Array.Clear(_pages);
        return default;
    }

    private static (long Page, int InPage, int Length) Locate(long offset, int length)
    {
        var inPage = (int)(offset & (PageSize - 1));
        return (offset >> PageShift, inPage, Math.Min(length, PageSize - inPage));
    }
}

/// <summary>Reads zeros, drops writes.</summary>
internal sealed class InterimNullBackend(long sizeBytes) : IBlockBackend
{
    public BlockBackendInfo Info { get; } = new(sizeBytes, 512, 4096,
        BlockBackendFeatures.Discard | BlockBackendFeatures.WriteZeroes | BlockBackendFeatures.VolatileCache | BlockBackendFeatures.Fua, 4096);

    public ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        buffer.Span.Clear();
        return default;
    }

    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, BlockWriteFlags flags = BlockWriteFlags.None, CancellationToken cancellationToken = default) => default;

    public ValueTask FlushAsync(CancellationToken cancellationToken = default) => default;

    public ValueTask DiscardAsync(long offset, long length, CancellationToken cancellationToken = default) => default;

    public ValueTask WriteZeroesAsync(long offset, long length, CancellationToken cancellationToken = default) => default;

    public ValueTask DisposeAsync() => default;
}
