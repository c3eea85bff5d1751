using System.Buffers;
using System.Runtime.InteropServices;

namespace UblkCsi.Engine.Buffers;

/// <summary>
/// A page-aligned block of native memory. It never moves, so the kernel and backends may hold its
/// address across awaits; <see cref="MemoryManager{T}.Memory"/> hands it out without allocating.
/// </summary>
public sealed unsafe class IoBuffer : MemoryManager<byte>
{
    private const int Alignment = 4096;
    private byte* _pointer;

    internal IoBuffer(int capacity)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(capacity);
        Capacity = capacity;
        _pointer = (byte*)NativeMemory.AlignedAlloc((nuint)capacity, Alignment);
    }

    public int Capacity { get; }

    /// <summary>Page-aligned native address of the buffer (valid until it is returned to its pool).</summary>
    public byte* Pointer => _pointer;

    /// <summary>Size class index in the pool that made it, or -1 for a buffer owned outright.</summary>
    internal int SizeClass { get; init; } = -1;

    /// <summary>The pool that made it, or null for a buffer owned outright.</summary>
    internal IoBufferPool? Owner { get; init; }

    public override Span<byte> GetSpan() => new(_pointer, Capacity);

    public override MemoryHandle Pin(int elementIndex = 0)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan((uint)elementIndex, (uint)Capacity, nameof(elementIndex));
        return new MemoryHandle(_pointer + elementIndex);
    }

    public override void Unpin()
    {
        // Native memory is always pinned.
    }

    protected override void Dispose(bool disposing)
    {
        if (_pointer != null)
        {
            NativeMemory.AlignedFree(_pointer);
            _pointer = null;
        }
    }
}
