namespace UblkCsi.Stores.Rpc.Streaming;

/// <summary>
/// The requests one stream message carries, collected by the writer loop and reused for every message
/// (the codec has written it out before the loop fills it again).
/// </summary>
internal sealed class IoRequestBatch
{
    public IoOperation[] Operations { get; } = new IoOperation[IoStreamFields.MaxBatchEntries];

    /// <summary>Encoded size of each operation (computed once per message).</summary>
    public int[] Sizes { get; } = new int[IoStreamFields.MaxBatchEntries];

    public int Count { get; set; }

    /// <summary>Payload bytes so far, bounded by the server's limit for one message.</summary>
    public int DataBytes { get; set; }

    public void Add(IoOperation op)
    {
        Operations[Count++] = op;
        DataBytes += op.WriteData.Length;
    }

    public void Clear()
    {
        Array.Clear(Operations, 0, Count);
        Count = 0;
        DataBytes = 0;
    }
}

/// <summary>The requests answered by one stream message, matched while it was parsed; reused for every message.</summary>
internal sealed class IoResponseBatch
{
    // A list, not a fixed array: a server may batch more than this client would, and a matched request
    // has already left the in-flight table, so it must never be dropped here.
    public List<IoOperation> Answered { get; } = new(IoStreamFields.MaxBatchEntries);
}
