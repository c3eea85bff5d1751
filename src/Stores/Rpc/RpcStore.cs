using UblkCsi.GrpcEndpoints;
using UblkCsi.BlockStore.V1;
using UblkCsi.Engine;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace UblkCsi.Stores.Rpc;

/// <summary>Settings of an rpc store.</summary>
/// <param name="Endpoint">The block-store server.</param>
/// <param name="Token">Shared token the server requires, or null. Never logged.</param>
/// <param name="Retry">Retries of calls that could not reach the server.</param>
/// <param name="ConnectTimeout">How long opening one connection may take.</param>
/// <param name="Tls">TLS toward the server, or null for cleartext.</param>
/// <param name="Insecure">Allows sending the token in cleartext to a server off this machine (logged once per volume).</param>
/// <param name="Logger">Where the store's warnings go.</param>
public sealed record RpcStoreOptions(
    GrpcEndpoint Endpoint,
    string? Token = null,
    RpcRetryPolicy? Retry = null,
    TimeSpan? ConnectTimeout = null,
    RpcTls? Tls = null,
    bool Insecure = false,
    ILogger? Logger = null)
{
    /// <summary>True when a token would travel unencrypted to another machine: only loopback TCP and unix sockets stay local.</summary>
    public bool SendsTokenInCleartextOffHost => Token is not null && Tls is null && !Endpoint.IsLocal;

    /// <summary>Hides the token from record printing.</summary>
    public override string ToString() => $"rpc endpoint={Endpoint}{(Tls is null ? "" : " tls")}{(Token is null ? "" : " token=***")}";
}

/// <summary>
/// The "rpc" store: the client of a block-store server (proto/blockstore/blockstore.proto). Control
/// calls map one-to-one onto the server's store; an opened volume (<see cref="RpcVolume"/>) sends
/// its reads and writes to the server in bounded messages. Errors arrive as the same store
/// exceptions and errnos the server's store raised. Calls that could not reach the server are
/// retried with backoff (<see cref="RpcRetryPolicy"/>); every call of the protocol is idempotent.
/// </summary>
public sealed partial class RpcStore : IVolumeStore
{

    private readonly BlockStoreConnection _connection;
    private readonly RpcRetryPolicy _retry;
    private readonly ILogger _logger;
    private int _disposed;

    /// <summary>Creates the client; no connection is opened until the first call.</summary>
    public RpcStore(RpcStoreOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.SendsTokenInCleartextOffHost && !options.Insecure)
        {
            throw new StoreParameterException(
                RpcStoreProvider.InsecureParameter,
                $"the token would travel in cleartext to {options.Endpoint}, which is not on this machine: " +
                $"set {RpcStoreProvider.TlsParameter}: \"true\" (with {RpcStoreProvider.CaCertSecret} or {RpcStoreProvider.CaFileParameter}), " +
                $"or, on a network you trust, {RpcStoreProvider.InsecureParameter}: \"true\"");
        }

        Options = options;
        _logger = options.Logger ?? NullLogger.Instance;
        var retry = (options.Retry ?? RpcRetryPolicy.Default).Validate();
        _retry = retry;
        _connection = new BlockStoreConnection(options.Endpoint, options.Token, retry, options.ConnectTimeout ?? TimeSpan.FromSeconds(5), options.Tls);
    }

    public RpcStoreOptions Options { get; }

    public string Type => RpcStoreProvider.TypeName;

    public string Description => $"rpc endpoint={Options.Endpoint}";

    /// <summary>The server's version, limits and what it serves (also a reachability check).</summary>
    public async Task<GetServerInfoResponse> GetServerInfoAsync(CancellationToken cancellationToken = default) =>
        await CallAsync<GetServerInfoRequest, GetServerInfoResponse>(static (c, r, o) => c.GetServerInfoAsync(r, o), new GetServerInfoRequest(), cancellationToken).ConfigureAwait(false);

    public async Task<VolumeInfo> CreateVolumeAsync(CreateVolumeRequest request, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        VolumeIds.ValidateName(request.Name);
        var message = new BlockStore.V1.CreateVolumeRequest { Name = request.Name, SizeBytes = request.SizeBytes };
        if (request.Source is { } source)
        {
            VolumeIds.Validate(source.Id, source.Kind == VolumeSourceKind.Snapshot ? "sourceSnapshotId" : "sourceVolumeId");
            message.Source = ProtoConvert.ToProto(source);
        }

        var response = await CallAsync<BlockStore.V1.CreateVolumeRequest, CreateVolumeResponse>(static (c, r, o) => c.CreateVolumeAsync(r, o), message, cancellationToken).ConfigureAwait(false);
        return ProtoConvert.FromProto(response.Volume ?? throw MissingField("CreateVolumeResponse.volume"));
    }

    public async Task<bool> DeleteVolumeAsync(string volumeId, CancellationToken cancellationToken = default)
    {
        VolumeIds.Validate(volumeId);
        var response = await CallAsync<DeleteVolumeRequest, DeleteVolumeResponse>(static (c, r, o) => c.DeleteVolumeAsync(r, o), new DeleteVolumeRequest { VolumeId = volumeId }, cancellationToken).ConfigureAwait(false);
        return response.Existed;
    }

    public async Task<VolumeInfo> GetVolumeAsync(string volumeId, CancellationToken cancellationToken = default)
    {
        VolumeIds.Validate(volumeId);
        var response = await CallAsync<GetVolumeRequest, GetVolumeResponse>(static (c, r, o) => c.GetVolumeAsync(r, o), new GetVolumeRequest { VolumeId = volumeId }, cancellationToken).ConfigureAwait(false);
        return ProtoConvert.FromProto(response.Volume ?? throw MissingField("GetVolumeResponse.volume"));
    }

    public async Task<IReadOnlyList<VolumeInfo>> ListVolumesAsync(CancellationToken cancellationToken = default)
    {
        var volumes = new List<VolumeInfo>();
        var request = new ListVolumesRequest();
        do
        {
            var page = await CallAsync<ListVolumesRequest, ListVolumesResponse>(static (c, r, o) => c.ListVolumesAsync(r, o), request, cancellationToken).ConfigureAwait(false);
            volumes.AddRange(page.Volumes.Select(ProtoConvert.FromProto));
            request = new ListVolumesRequest { StartingToken = CheckProgress(page.NextToken, request.StartingToken) };
        }
        while (request.StartingToken.Length > 0);

        return volumes;
    }

    public async Task<long> ExpandVolumeAsync(string volumeId, long newSizeBytes, CancellationToken cancellationToken = default)
    {
        VolumeIds.Validate(volumeId);
        var response = await CallAsync<ExpandVolumeRequest, ExpandVolumeResponse>(static (c, r, o) => c.ExpandVolumeAsync(r, o), new ExpandVolumeRequest { VolumeId = volumeId, SizeBytes = newSizeBytes }, cancellationToken).ConfigureAwait(false);
        return response.SizeBytes;
    }

    public async Task<SnapshotInfo> CreateSnapshotAsync(string sourceVolumeId, string name, CancellationToken cancellationToken = default)
    {
        VolumeIds.Validate(sourceVolumeId, "sourceVolumeId");
        VolumeIds.ValidateName(name);
        var response = await CallAsync<CreateSnapshotRequest, CreateSnapshotResponse>(static (c, r, o) => c.CreateSnapshotAsync(r, o), new CreateSnapshotRequest { SourceVolumeId = sourceVolumeId, Name = name }, cancellationToken).ConfigureAwait(false);
        return ProtoConvert.FromProto(response.Snapshot ?? throw MissingField("CreateSnapshotResponse.snapshot"));
    }

    public async Task<bool> DeleteSnapshotAsync(string snapshotId, CancellationToken cancellationToken = default)
    {
        VolumeIds.Validate(snapshotId, "snapshotId");
        var response = await CallAsync<DeleteSnapshotRequest, DeleteSnapshotResponse>(static (c, r, o) => c.DeleteSnapshotAsync(r, o), new DeleteSnapshotRequest { SnapshotId = snapshotId }, cancellationToken).ConfigureAwait(false);
        return response.Existed;
    }

    public async Task<SnapshotInfo> GetSnapshotAsync(string snapshotId, CancellationToken cancellationToken = default)
    {
        VolumeIds.Validate(snapshotId, "snapshotId");
        var response = await CallAsync<GetSnapshotRequest, GetSnapshotResponse>(static (c, r, o) => c.GetSnapshotAsync(r, o), new GetSnapshotRequest { SnapshotId = snapshotId }, cancellationToken).ConfigureAwait(false);
        return ProtoConvert.FromProto(response.Snapshot ?? throw MissingField("GetSnapshotResponse.snapshot"));
    }

    public async Task<IReadOnlyList<SnapshotInfo>> ListSnapshotsAsync(string? sourceVolumeId = null, CancellationToken cancellationToken = default)
    {
        if (sourceVolumeId is not null)
        {
            VolumeIds.Validate(sourceVolumeId, "sourceVolumeId");
        }

        var snapshots = new List<SnapshotInfo>();
        var request = new ListSnapshotsRequest { SourceVolumeId = sourceVolumeId ?? "" };
        do
        {
            var page = await CallAsync<ListSnapshotsRequest, ListSnapshotsResponse>(static (c, r, o) => c.ListSnapshotsAsync(r, o), request, cancellationToken).ConfigureAwait(false);
            snapshots.AddRange(page.Snapshots.Select(ProtoConvert.FromProto));
            request = new ListSnapshotsRequest { SourceVolumeId = request.SourceVolumeId, StartingToken = CheckProgress(page.NextToken, request.StartingToken) };
        }
        while (request.StartingToken.Length > 0);

        return snapshots;
    }

    public async Task<StoreCapacity> GetCapacityAsync(CancellationToken cancellationToken = default)
    {
        var response = await CallAsync<GetCapacityRequest, GetCapacityResponse>(static (c, r, o) => c.GetCapacityAsync(r, o), new GetCapacityRequest(), cancellationToken).ConfigureAwait(false);
        return ProtoConvert.FromProto(response);
    }

    public async Task<IBlockBackend> OpenVolumeAsync(string volumeId, VolumeAccess access = VolumeAccess.ReadWrite, CancellationToken cancellationToken = default)
    {
        VolumeIds.Validate(volumeId);
        var geometry = await CallAsync<OpenVolumeRequest, OpenVolumeResponse>(static (c, r, o) => c.OpenVolumeAsync(r, o), new OpenVolumeRequest { VolumeId = volumeId, ReadWrite = access == VolumeAccess.ReadWrite }, cancellationToken).ConfigureAwait(false);
        if (Options.SendsTokenInCleartextOffHost)
        {
            TokenInCleartext(_logger, volumeId, Options.Endpoint.ToString());
        }

        if (geometry.NbdEndpoint.Length == 0 || geometry.NbdExport.Length == 0)
        {
            throw new StoreException(StoreErrorCode.FailedPrecondition,
                $"block-store server {_connection.Server} named no data endpoint for volume '{volumeId}' (OpenVolume without nbd_endpoint): it predates the NBD data path; upgrade it");
        }

        var ticket = geometry.NbdExport;
        var data = new Nbd.NbdClientOptions(DataEndpoint(geometry.NbdEndpoint), ticket, ReadOnly: access == VolumeAccess.ReadOnly)
        {
            Tls = Options.Tls,
            // The ticket is a credential: messages name the volume.
            ExportLabel = volumeId,
            ConnectionExport = connection => $"{ticket}#{connection}",
            Reconnect = _retry.ToReconnectPolicy(),
            Counters = new Metrics.ReconnectCounters("rpc", "rpc_retries_total", "Requests sent to the server again after their data connection was lost."),
        };
        var client = await Nbd.NbdClient.ConnectAsync(data, _logger, cancellationToken).ConfigureAwait(false);
        return new RpcVolume(volumeId, client, geometry.WriterGeneration, access == VolumeAccess.ReadOnly);
    }

    /// <summary>
    /// Where to reach the data path the server named: a unix socket as it is; for TCP, the host this
    /// client reached the server on (the server names its bind address, which may be a wildcard or an
    /// address only it sees) at the data port.
    /// </summary>
    private GrpcEndpoint DataEndpoint(string advertised)
    {
        if (!GrpcEndpoint.TryParse(advertised, out var endpoint, out var error))
        {
            throw new IOException($"block-store server {_connection.Server} named an invalid data endpoint '{advertised}': {error}");
        }

        return endpoint.Kind == GrpcEndpointKind.Tcp && Options.Endpoint.Kind == GrpcEndpointKind.Tcp
            ? GrpcEndpoint.Tcp(Options.Endpoint.Host!, endpoint.Port)
            : endpoint;
    }

    /// <summary>Releases this store's hold on the connections; volumes still open keep them until disposed.</summary>
    public ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            _connection.Release();
        }

        return default;
    }

    private async Task<TResponse> CallAsync<TRequest, TResponse>(BlockStoreCall<TRequest, TResponse> method, TRequest request, CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        try
        {
            return await _connection.CallAsync<TRequest, TResponse>(method, request, cancellationToken).ConfigureAwait(false);
        }
        catch (RpcException e)
        {
            throw RpcErrorCodec.ToStoreException(e, _connection.Server);
        }
    }

    /// <summary>A page token must move forward, or a faulty server would keep the client listing forever.</summary>
    private string CheckProgress(string next, string previous)
    {
        if (next.Length > 0 && string.CompareOrdinal(next, previous) <= 0)
        {
            throw new IOException($"block-store server {_connection.Server} returned a list page token that does not advance ('{previous}' -> '{next}')");
        }

        return next;
    }

    private IOException MissingField(string field) =>
        new($"block-store server {_connection.Server} sent a response without {field}");

    [LoggerMessage(EventId = Engine.Logging.LogEventIds.RpcTokenInCleartext, Level = LogLevel.Warning, Message = "volume {VolumeId}: the block-store token travels in cleartext to {Endpoint} (StorageClass insecure: \"true\"); anyone on the path can read it and the volume's data")]
    private static partial void TokenInCleartext(ILogger logger, string volumeId, string endpoint);
}
