namespace UblkCsi.Engine.Device;

/// <summary>
/// Lock-free multi-producer, single-consumer set of tags whose backend operation finished on some
/// other thread. An intrusive stack over a preallocated next-index array: pushing allocates
/// nothing, and the consumer detaches the whole chain with one exchange, so there is no ABA.
/// A tag is in the stack at most once (it is pushed once per request, and only after the consumer
/// commits it can a new request for the tag exist).
/// </summary>
internal sealed class CompletionStack
{
    public const int Empty = -1;

    private readonly int[] _next;
    private int _head = Empty;

    public CompletionStack(int capacity)
    {
        _next = new int[capacity];
    }

    public bool IsEmpty => Volatile.Read(ref _head) == Empty;

    /// <summary>Any thread.</summary>
    public void Push(int tag)
    {
        while (true)
        {
            var head = Volatile.Read(ref _head);
            _next[tag] = head;
            if (Interlocked.CompareExchange(ref _head, tag, head) == head)
            {
                return;
            }
        }
    }

    /// <summary>Consumer only: detaches every pushed tag; walk the chain with <see cref="Next"/> until <see cref="Empty"/>.</summary>
    public int TakeAll() => Interlocked.Exchange(ref _head, Empty);

    /// <summary>The tag after <paramref name="tag"/> in a chain returned by <see cref="TakeAll"/>. Read it before acting on <paramref name="tag"/>.</summary>
    public int Next(int tag) => _next[tag];
}
