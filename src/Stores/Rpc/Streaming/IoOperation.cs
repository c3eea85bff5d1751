using System.Threading.Tasks.Sources;
using UblkCsi.BlockStore.V1;
using UblkCsi.Engine;

namespace UblkCsi.Stores.Rpc.Streaming;

/// <summary>
/// One data-path request on an <see cref="IoStream"/>: what to send, where a read's data goes, and the
/// awaitable completion. Pooled and reused (an <see cref="IValueTaskSource"/>), so a request in the
/// steady state allocates nothing: the request codec writes it straight into the transport's buffer and
/// the response codec copies a read's payload straight from the transport into <see cref="ReadBuffer"/>.
/// </summary>
internal sealed class IoOperation : IValueTaskSource
{
    /// <summary>Stands for a response whose id matches no request in flight (it is dropped).</summary>
    public static readonly IoOperation Unmatched = new(null);

    private readonly IoOperationPool? _pool;

    // Continuations run inline on the stream's reader: the engine's continuation only queues the
    // completion for its queue thread, so there is nothing to gain from a thread-pool hop.
    private ManualResetValueTaskSourceCore<bool> _completion;

    public IoOperation(IoOperationPool? pool) => _pool = pool;

    public ulong Id { get; set; }

    public IoOp Op { get; private set; }

    public long Offset { get; private set; }

    /// <summary>Bytes to read, discard or zero.</summary>
    public long Length { get; private set; }

    public ReadOnlyMemory<byte> WriteData { get; private set; }

    public Memory<byte> ReadBuffer { get; private set; }

    public bool Fua { get; private set; }

    /// <summary>0 on the first send; incremented each time the request is sent again on a new stream.</summary>
    public uint Attempt { get; set; }

    /// <summary>OPEN only: the volume id as UTF-8.</summary>
    public ReadOnlyMemory<byte> VolumeIdUtf8 { get; private set; }

    /// <summary>OPEN only: the writer generation every mutation of the stream carries (0 when read-only).</summary>
    public ulong WriterGeneration { get; private set; }

    /// <summary>The response's status code (0 = OK), errno and message, set by the response codec.</summary>
    public int Code { get; set; }

    public int Errno { get; set; }

    public string? Message { get; set; }

    /// <summary>True for requests the server's fence orders on a retry.</summary>
    public bool IsMutation => Op is IoOp.Write or IoOp.Discard or IoOp.WriteZeroes;

    public static IoOperation ForOpen(ReadOnlyMemory<byte> volumeIdUtf8, ulong writerGeneration) =>
        new(null) { Op = IoOp.Open, VolumeIdUtf8 = volumeIdUtf8, WriterGeneration = writerGeneration };

    public void SetRead(long offset, Memory<byte> buffer) => Set(IoOp.Read, offset, buffer.Length, default, buffer, false);

    public void SetWrite(long offset, ReadOnlyMemory<byte> data, bool fua) => Set(IoOp.Write, offset, data.Length, data, default, fua);

    public void SetFlush() => Set(IoOp.Flush, 0, 0, default, default, false);

    public void SetDiscard(long offset, long length) => Set(IoOp.Discard, offset, length, default, default, false);

    public void SetWriteZeroes(long offset, long length) => Set(IoOp.WriteZeroes, offset, length, default, default, false);

    /// <summary>The completion to hand to the caller.</summary>
    public ValueTask AsValueTask() => new(this, _completion.Version);

    /// <summary>Completes with the response the codec recorded (OK or the server's error).</summary>
    public void CompleteFromResponse(string volumeId, string server)
    {
        if (Code == 0)
        {
            _completion.SetResult(true);
            return;
        }

        // With an errno the server's message is the store's own (as over the unary calls); without, say where it came from.
        Fail(Errno > 0
            ? new BlockBackendException(Errno, Message ?? "")
            : new BlockBackendException(RpcErrorCodec.ErrnoFor((Grpc.Core.StatusCode)Code), $"volume '{volumeId}' on block-store server {server}: {(Grpc.Core.StatusCode)Code}: {Message}"));
    }

    public void Fail(Exception error) => _completion.SetException(error);

    public ValueTaskSourceStatus GetStatus(short token) => _completion.GetStatus(token);

    public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _completion.OnCompleted(continuation, state, token, flags);

    public void GetResult(short token)
    {
        try
        {
            _completion.GetResult(token);
        }
        finally
        {
            Reset();
            _pool?.Return(this);
        }
    }

    private void Set(IoOp op, long offset, long length, ReadOnlyMemory<byte> writeData, Memory<byte> readBuffer, bool fua)
    {
        Op = op;
        Offset = offset;
        Length = length;
        WriteData = writeData;
        ReadBuffer = readBuffer;
        Fua = fua;
    }

    private void Reset()
    {
        // Drop the caller's buffers so the pool does not keep them reachable.
        WriteData = default;
        ReadBuffer = default;
        Attempt = 0;
        Code = 0;
        Errno = 0;
        Message = null;
        _completion.Reset();
    }
}

/// <summary>A bounded free list of <see cref="IoOperation"/>s (the engine's queue depth bounds how many are in use).</summary>
internal sealed class IoOperationPool
{
    private const int MaxPooled = 1024;
    private readonly System.Collections.Concurrent.ConcurrentQueue<IoOperation> _free = new();

    public IoOperation Rent() => _free.TryDequeue(out var op) ? op : new IoOperation(this);

    public void Return(IoOperation op)
    {
        if (_free.Count < MaxPooled)
        {
            _free.Enqueue(op);
        }
    }
}
