using Google.Protobuf;
using UblkCsi.BlockStore.V1;
using UblkCsi.Engine;
using Grpc.Core;

namespace UblkCsi.Stores.Rpc;

/// <summary>
/// A volume of a block-store server, opened through <see cref="RpcStore"/>. Every request names the
/// volume (the protocol has no sessions), so after a dropped connection or a server restart a call
/// is simply sent again. I/O larger than the server's payload limit is split into calls of at most
/// that size, sent concurrently; the I/O completes only when every piece was acknowledged, and
/// fails when any piece fails. Write data is sent straight from the caller's buffer (no copy).
/// </summary>
/// <remarks>
/// Unlike the file and memory volumes, a call here allocates: the request message, the HTTP/2
/// request of the shared <see cref="GrpcClient"/> and, for reads, the response payload (about 4-5 KB
/// per request on the engine's queue thread, measured by the kernel scenario's --stats). That is the
/// price of the gRPC transport; it is small next to a network round trip.
/// </remarks>
public sealed class RpcVolume : StoreVolume
{

    // Static lambdas: the compiler caches them, so marking a retry allocates nothing.
    private static readonly Action<WriteRequest, uint> MarkWriteRetry = static (request, attempt) => request.Attempt = attempt;
    private static readonly Action<DiscardRequest, uint> MarkDiscardRetry = static (request, attempt) => request.Attempt = attempt;
    private static readonly Action<WriteZeroesRequest, uint> MarkWriteZeroesRetry = static (request, attempt) => request.Attempt = attempt;

    private readonly BlockStoreConnection _connection;
    private readonly int _maxPayload;
    private int _disposed;

    internal RpcVolume(BlockStoreConnection connection, string volumeId, OpenVolumeResponse geometry, bool readOnly)
        : base(volumeId, ToInfo(volumeId, geometry, connection.Server), readOnly)
    {
        _connection = connection;
        _maxPayload = (int)Math.Min(geometry.MaxPayloadBytes is 0 ? BlockStoreProtocol.MaxPayloadBytes : geometry.MaxPayloadBytes, BlockStoreProtocol.MaxPayloadBytes);
        _maxPayload -= _maxPayload % StoreLimits.IoAlignment;
    }

    /// <summary>The block-store server, for messages.</summary>
    public string Server => _connection.Server;

    public override ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            _connection.Release();
        }

        return default;
    }

    protected override ValueTask ReadCoreAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        if (buffer.Length <= _maxPayload)
        {
            return new ValueTask(ReadPieceAsync(offset, buffer, cancellationToken));
        }

        return SplitAsync(offset, buffer.Length, (Volume: this, Buffer: buffer, Token: cancellationToken),
            static (state, pieceOffset, start, length) => state.Volume.ReadPieceAsync(pieceOffset, state.Buffer.Slice(start, length), state.Token));
    }

    protected override ValueTask WriteCoreAsync(long offset, ReadOnlyMemory<byte> data, bool fua, CancellationToken cancellationToken)
    {
        if (data.Length <= _maxPayload)
        {
            return new ValueTask(WritePieceAsync(offset, data, fua, cancellationToken));
        }

        // Each piece carries FUA itself: the whole write is durable once every piece is acknowledged.
        return SplitAsync(offset, data.Length, (Volume: this, Data: data, Fua: fua, Token: cancellationToken),
            static (state, pieceOffset, start, length) => state.Volume.WritePieceAsync(pieceOffset, state.Data.Slice(start, length), state.Fua, state.Token));
    }

    protected override ValueTask FlushCoreAsync(CancellationToken cancellationToken) =>
        new(CallAsync<FlushRequest, FlushResponse>(static (c, r, o) => c.FlushAsync(r, o), new FlushRequest { VolumeId = VolumeId }, null, cancellationToken));

    protected override ValueTask DiscardCoreAsync(long offset, long length, CancellationToken cancellationToken) =>
        new(CallAsync<DiscardRequest, DiscardResponse>(static (c, r, o) => c.DiscardAsync(r, o), new DiscardRequest { VolumeId = VolumeId, Offset = offset, Length = length }, MarkDiscardRetry, cancellationToken));

    protected override ValueTask WriteZeroesCoreAsync(long offset, long length, CancellationToken cancellationToken) =>
        new(CallAsync<WriteZeroesRequest, WriteZeroesResponse>(static (c, r, o) => c.WriteZeroesAsync(r, o), new WriteZeroesRequest { VolumeId = VolumeId, Offset = offset, Length = length }, MarkWriteZeroesRetry, cancellationToken));

    private async Task ReadPieceAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        var request = new ReadRequest { VolumeId = VolumeId, Offset = offset, Length = (uint)buffer.Length };
        var response = await CallAsync<ReadRequest, ReadResponse>(static (c, r, o) => c.ReadAsync(r, o), request, null, cancellationToken).ConfigureAwait(false);
        if (response.Data.Length != buffer.Length)
        {
            throw new BlockBackendException(
                BlockBackendException.EIO,
                $"volume '{VolumeId}': block-store server {Server} returned {response.Data.Length} bytes for a read of {buffer.Length} at {offset}");
        }

        response.Data.Span.CopyTo(buffer.Span);
    }

    private Task WritePieceAsync(long offset, ReadOnlyMemory<byte> data, bool fua, CancellationToken cancellationToken)
    {
        // UnsafeWrap: the engine keeps the buffer unchanged until this write completes, retries included.
        var request = new WriteRequest { VolumeId = VolumeId, Offset = offset, Data = UnsafeByteOperations.UnsafeWrap(data), Fua = fua };
        return CallAsync<WriteRequest, WriteResponse>(static (c, r, o) => c.WriteAsync(r, o), request, MarkWriteRetry, cancellationToken);
    }

    private async Task<TResponse> CallAsync<TRequest, TResponse>(BlockStoreCall<TRequest, TResponse> method, TRequest request, Action<TRequest, uint>? markRetry, CancellationToken cancellationToken)
    {
        if (Volatile.Read(ref _disposed) != 0)
        {
            throw new BlockBackendException(BlockBackendException.EIO, $"volume '{VolumeId}' is closed");
        }

        try
        {
            return await _connection.CallAsync<TRequest, TResponse>(method, request, cancellationToken, markRetry).ConfigureAwait(false);
        }
        catch (RpcException e)
        {
            throw RpcErrorCodec.ToBackendException(e, VolumeId, Server);
        }
    }

    /// <summary>Runs one call per piece of at most the payload limit, concurrently, and waits for all.</summary>
    private ValueTask SplitAsync<TState>(long offset, int length, TState state, Func<TState, long, int, int, Task> piece)
    {
        var count = (length + _maxPayload - 1) / _maxPayload;
        var pieces = new Task[count];
        for (var i = 0; i < count; i++)
        {
            var start = i * _maxPayload;
            pieces[i] = piece(state, offset + start, start, Math.Min(_maxPayload, length - start));
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
