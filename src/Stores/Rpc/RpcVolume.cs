using UblkCsi.BlockStore.V1;
using UblkCsi.Engine;
using UblkCsi.Stores.Metrics;
using UblkCsi.Stores.Rpc.Streaming;

namespace UblkCsi.Stores.Rpc;

/// <summary>
/// A volume of a block-store server, opened through <see cref="RpcStore"/>. Reads and writes travel on
/// long-lived Stream calls (<see cref="IoStream"/>): requests tagged by id, answered out of order, with
/// no allocation per request in the steady state. A broken stream is replaced and its unanswered requests
/// sent again, so a dropped connection or a server restart is ridden out like with unary calls. I/O larger
/// than the server's payload limit is split into requests of at most that size, sent concurrently; the
/// I/O completes only when every piece was acknowledged, and fails when any piece fails.
/// A read-write volume holds the server's writer lease (the generation its open took): once another
/// client opens the volume for writing, the server refuses this one's mutations (EIO, never retried)
/// and <see cref="Condition"/> turns abnormal, saying the volume was taken over.
/// </summary>
/// <remarks>
/// The engine's queue threads each keep to one stream (chosen by thread), so a queue's requests share a
/// stream's ordering and batching while queues do not contend. Cancellation tokens are not observed:
/// a request that was sent is answered or fails with the stream; disposing the volume fails what is left.
/// </remarks>
public sealed class RpcVolume : StoreVolume, IStoreVolumeMetrics
{
    /// <summary>Streams per volume: enough to keep two queue threads from sharing one writer loop.</summary>
    internal const int StreamsPerVolume = 2;

    private readonly BlockStoreConnection _connection;
    private readonly IoStream[] _streams;
    private readonly IoOperationPool _operations = new();
    private readonly ReconnectCounters _reconnects = new("rpc", "rpc_retries_total", "Requests sent to the server again after their stream broke.");
    private readonly int _maxPayload;
    private int _disposed;

    internal RpcVolume(BlockStoreConnection connection, string volumeId, OpenVolumeResponse geometry, bool readOnly)
        : base(volumeId, ToInfo(volumeId, geometry, connection.Server), readOnly)
    {
        _connection = connection;
        _maxPayload = (int)Math.Min(geometry.MaxPayloadBytes is 0 ? BlockStoreProtocol.MaxPayloadBytes : geometry.MaxPayloadBytes, BlockStoreProtocol.MaxPayloadBytes);
        _maxPayload -= _maxPayload % StoreLimits.IoAlignment;
        _streams = new IoStream[StreamsPerVolume];
        for (var i = 0; i < _streams.Length; i++)
        {
            _streams[i] = new IoStream(connection, volumeId, geometry.WriterGeneration, connection.Retry, _reconnects);
        }

        WriterGeneration = geometry.WriterGeneration;
    }

    /// <summary>Broken streams replaced (<c>rpc_reconnects_total</c>) and requests sent again on them (<c>rpc_retries_total</c>).</summary>
    public StoreMetricsSnapshot ReadMetrics() => _reconnects.Read();

    /// <summary>The block-store server, for messages.</summary>
    public string Server => _connection.Server;

    /// <summary>The writer lease this volume's open took; 0 when read-only.</summary>
    public ulong WriterGeneration { get; }

    /// <summary>Abnormal once the server refused a mutation because another writer opened the volume.</summary>
    public override VolumeCondition Condition
    {
        get
        {
            foreach (var stream in _streams)
            {
                if (stream.TakenOver is { } refusal)
                {
                    return new VolumeCondition(true, $"taken over: {refusal}");
                }
            }

            return VolumeCondition.Healthy;
        }
    }

    public override async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            foreach (var stream in _streams)
            {
                await stream.DisposeAsync().ConfigureAwait(false);
            }

            _connection.Release();
        }
    }

    protected override ValueTask ReadCoreAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        if (buffer.Length <= _maxPayload)
        {
            return ReadPiece(offset, buffer);
        }

        return SplitAsync(offset, buffer.Length, (Volume: this, Buffer: buffer),
            static (state, pieceOffset, start, length) => state.Volume.ReadPiece(pieceOffset, state.Buffer.Slice(start, length)));
    }

    protected override ValueTask WriteCoreAsync(long offset, ReadOnlyMemory<byte> data, bool fua, CancellationToken cancellationToken)
    {
        if (data.Length <= _maxPayload)
        {
            return WritePiece(offset, data, fua);
        }

        // Each piece carries FUA itself: the whole write is durable once every piece is acknowledged.
        return SplitAsync(offset, data.Length, (Volume: this, Data: data, Fua: fua),
            static (state, pieceOffset, start, length) => state.Volume.WritePiece(pieceOffset, state.Data.Slice(start, length), state.Fua));
    }

    protected override ValueTask FlushCoreAsync(CancellationToken cancellationToken) =>
        Flush();

    protected override ValueTask DiscardCoreAsync(long offset, long length, CancellationToken cancellationToken)
    {
        var op = Rent();
        op.SetDiscard(offset, length);
        return Submit(op);
    }

    protected override ValueTask WriteZeroesCoreAsync(long offset, long length, CancellationToken cancellationToken)
    {
        var op = Rent();
        op.SetWriteZeroes(offset, length);
        return Submit(op);
    }

    private ValueTask ReadPiece(long offset, Memory<byte> buffer)
    {
        var op = Rent();
        op.SetRead(offset, buffer);
        return Submit(op);
    }

    // The engine keeps the buffer unchanged until this write completes, retries included: it is written
    // out of that buffer, not copied first.
    private ValueTask WritePiece(long offset, ReadOnlyMemory<byte> data, bool fua)
    {
        var op = Rent();
        op.SetWrite(offset, data, fua);
        return Submit(op);
    }

    // A flush is answered only after every write the server acknowledged before it is durable; the
    // engine sends it after the writes it covers completed, so any stream may carry it.
    private ValueTask Flush()
    {
        var op = Rent();
        op.SetFlush();
        return Submit(op);
    }

    private IoOperation Rent()
    {
        if (Volatile.Read(ref _disposed) != 0)
        {
            throw new BlockBackendException(BlockBackendException.EIO, $"volume '{VolumeId}' is closed");
        }

        return _operations.Rent();
    }

    private ValueTask Submit(IoOperation op) =>
        _streams[(uint)Environment.CurrentManagedThreadId % (uint)_streams.Length].SubmitAsync(op);

    /// <summary>Runs one call per piece of at most the payload limit, concurrently, and waits for all.</summary>
    private ValueTask SplitAsync<TState>(long offset, int length, TState state, Func<TState, long, int, int, ValueTask> piece)
    {
        var count = (length + _maxPayload - 1) / _maxPayload;
        var pieces = new Task[count];
        for (var i = 0; i < count; i++)
        {
            var start = i * _maxPayload;
            pieces[i] = piece(state, offset + start, start, Math.Min(_maxPayload, length - start)).AsTask();
        }

        return new ValueTask(Task.WhenAll(pieces));
    }

    /// <summary>The geometry the server reported, checked so a faulty server cannot hand the engine nonsense.</summary>
    private static BlockBackendInfo ToInfo(string volumeId, OpenVolumeResponse geometry, string server)
    {
        var logical = (int)geometry.LogicalBlockSize;
        var physical = (int)geometry.PhysicalBlockSize;
        if (logical is not (512 or 4096) || physical < logical || (physical & (physical - 1)) != 0
            || geometry.SizeBytes <= 0 || geometry.SizeBytes % logical != 0)
        {
            throw new IOException(
                $"block-store server {server} reported an invalid geometry for volume '{volumeId}': size {geometry.SizeBytes}, " +
                $"logical block {logical}, physical block {physical}");
        }

        var features = BlockBackendFeatures.None;
        features |= geometry.VolatileCache ? BlockBackendFeatures.VolatileCache : 0;
        features |= geometry.Fua ? BlockBackendFeatures.Fua : 0;
        features |= geometry.Discard ? BlockBackendFeatures.Discard : 0;
        features |= geometry.WriteZeroes ? BlockBackendFeatures.WriteZeroes : 0;
        return new BlockBackendInfo(geometry.SizeBytes, logical, physical, features, (int)geometry.DiscardGranularity);
    }
}
