using System.Buffers;
using UblkCsi.Linux;

namespace UblkCsi.Engine.Buffers;

/// <summary>
/// A page-aligned block of native memory. It never moves, so the kernel and backends may hold its
/// address across awaits; <see cref="MemoryManager{T}.Memory"/> hands it out without allocating.
/// <para>
/// Its pages are an anonymous mapping of their own, not heap memory, so that freeing a
/// <see cref="Retire">retired</see> buffer gives its pages back only when the kernel lets go of
/// them: the heap would hand the same pages to this process's next allocation.
/// </para>
/// </summary>
public sealed unsafe class IoBuffer : MemoryManager<byte>
{
    private byte* _pointer;
    private int _retired;

    internal IoBuffer(int capacity)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(capacity);
        Capacity = capacity;
        var address = Libc.Mmap(0, (nuint)capacity, Libc.PROT_READ | Libc.PROT_WRITE, Libc.MAP_PRIVATE | Libc.MAP_ANONYMOUS, -1, 0);
        if (address == -1)
        {
            throw new OutOfMemoryException($"mapping a {capacity}-byte I/O buffer failed: {Interop.Errno.Describe(Libc.LastErrno)}");
        }

        _pointer = (byte*)address;
    }

    public int Capacity { get; }

    /// <summary>Page-aligned native address of the buffer (valid until it is returned to its pool).</summary>
    public byte* Pointer => _pointer;

    /// <summary>Size class index in the pool that made it, or -1 for a buffer owned outright.</summary>
    internal int SizeClass { get; init; } = -1;

    /// <summary>The pool that made it, or null for a buffer owned outright.</summary>
    internal IoBufferPool? Owner { get; init; }

    /// <summary>Set by <see cref="Retire"/>: the buffer is freed, never reused, when its request ends.</summary>
    public bool IsRetired => Volatile.Read(ref _retired) != 0;

    /// <summary>
    /// Says that the kernel may still read these pages after the request they carry has ended, so
    /// they must never be written again. A backend calls it for a payload it handed to a socket by
    /// reference (splice) on a connection dropped before the peer answered: a peer still alive reads
    /// it later, and must read what this request wrote, not another request's (maybe another
    /// volume's) bytes. The engine then unmaps the buffer instead of reusing it; the kernel keeps
    /// the pages, unchanged, for as long as it references them. Any thread; idempotent.
    /// </summary>
    public void Retire() => Volatile.Write(ref _retired, 1);

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
            _ = Libc.Munmap((nint)_pointer, (nuint)Capacity);
            _pointer = null;
        }
    }
}
