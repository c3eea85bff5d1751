using System.Runtime.CompilerServices;
using UblkCsi.Engine;
using UblkCsi.Stores.Metrics;
using UblkCsi.Stores.Nbd;

namespace UblkCsi.Stores.Rpc;

/// <summary>
/// A volume of a block-store server, opened through <see cref="RpcStore"/>. The open is a gRPC call;
/// the data path is the server's NBD listener, reached with the export name (a ticket) the open
/// returned, through this project's NBD client: a connection per engine queue, requests answered out of
/// order, no allocation per request, large reads received straight into the request's pages, and a
/// lost connection reconnected with its unanswered requests sent again (the server stops the
/// connection a reconnect replaces before it serves the new one, so a stale copy of a write cannot land
/// after its retry).
/// A read-write volume holds the server's writer lease (the generation its open took): once another
/// client opens the volume for writing, the server refuses this one's mutations (EIO, never retried)
/// and <see cref="Condition"/> turns abnormal, saying the volume was taken over.
/// </summary>
public sealed class RpcVolume : StoreVolume, IStoreVolumeMetrics
{
    private readonly NbdVolume _data;
    private string? _takenOver;
    private int _disposed;

    internal RpcVolume(string volumeId, NbdClient client, ulong writerGeneration, bool readOnly)
        : this(volumeId, new NbdVolume(volumeId, client, readOnly), writerGeneration, readOnly)
    {
    }

    private RpcVolume(string volumeId, NbdVolume data, ulong writerGeneration, bool readOnly)
        : base(volumeId, data.Info, readOnly)
    {
        _data = data;
        WriterGeneration = writerGeneration;
    }

    /// <summary>Lost data connections replaced (<c>rpc_reconnects_total</c>) and requests sent again on them (<c>rpc_retries_total</c>).</summary>
    public StoreMetricsSnapshot ReadMetrics() => _data.ReadMetrics();

    /// <summary>The data path's NBD client (tests inspect its connections).</summary>
    public NbdClient DataClient => _data.Client;

    /// <summary>The writer lease this volume's open took; 0 when read-only.</summary>
    public ulong WriterGeneration { get; }

    /// <summary>Abnormal once the server refused a mutation because another writer opened the volume, or while the server is unreachable.</summary>
    public override VolumeCondition Condition =>
        Volatile.Read(ref _takenOver) is { } refusal ? new VolumeCondition(true, $"taken over: {refusal}") : _data.Condition;

    public override bool ServesRegisteredBuffers => _data.ServesRegisteredBuffers;

    public override async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            await _data.DisposeAsync().ConfigureAwait(false);
        }
    }

    protected override ValueTask ReadCoreAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken) =>
        _data.ReadAsync(offset, buffer, cancellationToken);

    protected override bool TryReadRegisteredCore(long offset, RegisteredBuffer buffer, CancellationToken cancellationToken, out ValueTask pending) =>
        _data.TryReadRegistered(offset, buffer, cancellationToken, out pending);

    protected override ValueTask WriteCoreAsync(long offset, ReadOnlyMemory<byte> data, bool fua, CancellationToken cancellationToken) =>
        Mutation(_data.WriteAsync(offset, data, fua ? BlockWriteFlags.Fua : BlockWriteFlags.None, cancellationToken));

    protected override ValueTask FlushCoreAsync(CancellationToken cancellationToken) =>
        Mutation(_data.FlushAsync(cancellationToken));

    protected override ValueTask DiscardCoreAsync(long offset, long length, CancellationToken cancellationToken) =>
        Mutation(_data.DiscardAsync(offset, length, cancellationToken));

    protected override ValueTask WriteZeroesCoreAsync(long offset, long length, CancellationToken cancellationToken) =>
        Mutation(_data.WriteZeroesAsync(offset, length, cancellationToken));

    /// <summary>
    /// A mutation (or flush) as the server answered it, except that a refusal of this writer (EPERM on
    /// the wire, EROFS from the NBD client) marks the volume taken over and fails with EIO, as a
    /// superseded writer's I/O always has.
    /// </summary>
    private ValueTask Mutation(ValueTask pending) =>
        pending.IsCompletedSuccessfully || IsReadOnly ? pending : WatchRefusalAsync(pending);

    // Pooled: a mutation in flight is the common case, and the data path allocates nothing per request.
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask WatchRefusalAsync(ValueTask pending)
    {
        try
        {
            await pending.ConfigureAwait(false);
        }
        catch (BlockBackendException e) when (e.Errno == BlockBackendException.EROFS)
        {
            var refusal = $"volume '{VolumeId}' was opened for writing elsewhere after this client opened it (its writer generation {WriterGeneration} is superseded); its writes and flushes are refused";
            Volatile.Write(ref _takenOver, refusal);
            throw new BlockBackendException(BlockBackendException.EIO, refusal, e);
        }
    }
}
