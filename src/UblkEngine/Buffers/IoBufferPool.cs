namespace UblkCsi.Engine.Buffers;

/// <summary>
/// A process-wide pool of page-aligned I/O buffers in power-of-two size classes (4 KiB to 32 MiB).
/// Devices rent one per request and return it after the commit, so an idle device holds none; the
/// pool keeps at most <see cref="MaxRetainedBytes"/> of free buffers and frees the rest. A
/// <see cref="IoBuffer.Retire">retired</see> buffer is always freed.
/// </summary>
public sealed class IoBufferPool
{
    private const int MinShift = 12;
    private const int MaxShift = 25;
    private const int SlotsPerClass = 256;

    private readonly SizeClass[] _classes;
    private long _retainedBytes;
    private long _outstandingBytes;
    private long _retiredBuffers;

    public IoBufferPool(long maxRetainedBytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(maxRetainedBytes);
        MaxRetainedBytes = maxRetainedBytes;
        _classes = new SizeClass[MaxShift - MinShift + 1];
        for (var i = 0; i < _classes.Length; i++)
        {
            _classes[i] = new SizeClass(1 << (MinShift + i));
        }
    }

    /// <summary>The pool every device uses unless its options name another: keeps up to 64 MiB of free buffers.</summary>
    public static IoBufferPool Shared { get; } = new(64L << 20);

    /// <summary>Largest buffer the pool hands out.</summary>
    public const int MaxBufferBytes = 1 << MaxShift;

    public long MaxRetainedBytes { get; }

    /// <summary>Bytes held free in the pool.</summary>
    public long RetainedBytes => Interlocked.Read(ref _retainedBytes);

    /// <summary>Bytes rented and not yet returned.</summary>
    public long OutstandingBytes => Interlocked.Read(ref _outstandingBytes);

    /// <summary>Retired buffers given back and freed instead of reused.</summary>
    public long RetiredBuffers => Interlocked.Read(ref _retiredBuffers);

    /// <summary>A buffer of at least <paramref name="minimumLength"/> bytes (rounded up to its size class).</summary>
    public IoBuffer Rent(int minimumLength)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(minimumLength);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(minimumLength, MaxBufferBytes);
        var index = ClassIndex(minimumLength);
        var sizeClass = _classes[index];
        var buffer = sizeClass.TryPop();
        if (buffer != null)
        {
            Interlocked.Add(ref _retainedBytes, -sizeClass.BufferSize);
        }
        else
        {
            buffer = new IoBuffer(sizeClass.BufferSize) { SizeClass = index, Owner = this };
        }

        Interlocked.Add(ref _outstandingBytes, sizeClass.BufferSize);
        return buffer;
    }

    /// <summary>Gives a rented buffer back; it is kept for reuse, or freed when the pool is full or it was retired.</summary>
    public void Return(IoBuffer buffer)
    {
        if (buffer.Owner != this)
        {
            throw new ArgumentException("the buffer was not rented from this pool", nameof(buffer));
        }

        var sizeClass = _classes[buffer.SizeClass];
        Interlocked.Add(ref _outstandingBytes, -sizeClass.BufferSize);
        if (buffer.IsRetired)
        {
            Interlocked.Increment(ref _retiredBuffers);
            ((IDisposable)buffer).Dispose();
            return;
        }

        if (Interlocked.Add(ref _retainedBytes, sizeClass.BufferSize) <= MaxRetainedBytes && sizeClass.TryPush(buffer))
        {
            return;
        }

        Interlocked.Add(ref _retainedBytes, -sizeClass.BufferSize);
        ((IDisposable)buffer).Dispose();
    }

    /// <summary>Frees every retained buffer (e.g. after a burst, or in tests).</summary>
    public void Trim()
    {
        foreach (var sizeClass in _classes)
        {
            while (sizeClass.TryPop() is { } buffer)
            {
                Interlocked.Add(ref _retainedBytes, -sizeClass.BufferSize);
                ((IDisposable)buffer).Dispose();
            }
        }
    }

    private static int ClassIndex(int length)
    {
        var shift = length <= (1 << MinShift) ? MinShift : 32 - int.LeadingZeroCount(length - 1);
        return shift - MinShift;
    }

    /// <summary>A small stack of free buffers of one size behind a lock held for a few instructions.</summary>
    private sealed class SizeClass(int bufferSize)
    {
        private readonly IoBuffer?[] _slots = new IoBuffer?[SlotsPerClass];
        private int _count;

        public int BufferSize { get; } = bufferSize;

        public IoBuffer? TryPop()
        {
            lock (_slots)
            {
                if (_count == 0)
                {
                    return null;
                }

                var buffer = _slots[--_count];
                _slots[_count] = null;
                return buffer;
            }
        }

        public bool TryPush(IoBuffer buffer)
        {
            lock (_slots)
            {
                if (_count == _slots.Length)
                {
                    return false;
                }

                _slots[_count++] = buffer;
                return true;
            }
        }
    }
}
