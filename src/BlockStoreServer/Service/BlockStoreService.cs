using Google.Protobuf;
using UblkCsi.GrpcHosting;
using Microsoft.Extensions.Logging;
using UblkCsi.BlockStore.V1;
using UblkCsi.Engine;
using Grpc.Core;
using UblkCsi.Stores;
using UblkCsi.Stores.Rpc;

namespace UblkCsi.BlockStoreServer.Service;

/// <summary>Settings of a <see cref="BlockStoreService"/>.</summary>
public sealed record BlockStoreServiceOptions
{
    /// <summary>The shared token every call must carry, or null for no authentication. Never logged.</summary>
    public string? Token { get; init; }

    /// <summary>Reported by GetServerInfo, e.g. "ublk-blockstore-server 0.1.0".</summary>
    public string ServerVersion { get; init; } = "ublk-csi block-store service";

    /// <summary>Largest page of a list call.</summary>
    public int ListPageSize { get; init; } = 1000;

    /// <summary>How long a retried mutation waits for the lost attempt to finish before answering UNAVAILABLE.</summary>
    public TimeSpan RetryDrainTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Where to serve the data path (NBD, <see cref="Nbd.NbdDataServer"/>), or null for nowhere (control
    /// calls only: OpenVolume then names no data endpoint). tcp://HOST:0 picks a free port.
    /// </summary>
    public GrpcEndpoints.GrpcEndpoint? DataEndpoint { get; init; }

    /// <summary>
    /// What OpenVolume names as the data endpoint when clients reach the listener elsewhere than where it
    /// is bound (a proxy, NAT, a Kubernetes Service port); null: the bound endpoint. Clients keep the host
    /// they reached the service on and take the port.
    /// </summary>
    public GrpcEndpoints.GrpcEndpoint? DataAdvertisedEndpoint { get; init; }

    /// <summary>TLS of the data path (NBD_OPT_STARTTLS, then required of every client), or null for cleartext: give the gRPC listener's.</summary>
    public GrpcServerTls? DataTls { get; init; }

    /// <summary>File holding the key that seals data-path tickets (made on first use), or null for a key that lives as long as the service.</summary>
    public string? TicketKeyFile { get; init; }

    /// <summary>The name of <see cref="TicketKeyFile"/> in a server's root, so tickets outlive a restart.</summary>
    public const string TicketKeyFileName = "nbd-ticket.key";

    /// <summary>Hides the token from record printing.</summary>
    public override string ToString() => $"BlockStoreServiceOptions {{ ServerVersion = {ServerVersion}, Token = {(Token is null ? "none" : "***")} }}";
}

/// <summary>
/// Serves an <see cref="IVolumeStore"/> over the block-store protocol: bind it with
/// <c>server.AddService(service)</c>. Store exceptions become gRPC
/// statuses with structured details (see <see cref="RpcErrorCodec"/>). Data-path calls run against
/// volumes kept open in an <see cref="OpenVolumeTable"/>; mutations are never cancelled halfway (a
/// client that went away before one started gets nothing applied), and retried mutations are
/// ordered after the attempt they replace (<see cref="MutationFence"/>).
/// The service owns neither the store nor the server: dispose it to flush and close its open volumes,
/// after the server stopped.
/// </summary>
public sealed partial class BlockStoreService : BlockStore.V1.BlockStore.BlockStoreBase, IAsyncDisposable
{
    private static readonly WriteResponse WriteDone = new();
    private static readonly FlushResponse FlushDone = new();
    private static readonly DiscardResponse DiscardDone = new();
    private static readonly WriteZeroesResponse WriteZeroesDone = new();

    private readonly IVolumeStore _store;
    private readonly BlockStoreServiceOptions _options;
    private readonly ILogger _logger;
    private readonly BearerTokenCheck _auth;
    private readonly OpenVolumeTable _volumes;
    private readonly Nbd.NbdDataTickets _tickets;
    private readonly Nbd.NbdDataServer? _data;

    /// <exception cref="IOException">The data endpoint cannot be bound, or the ticket key cannot be read or made.</exception>
    public BlockStoreService(IVolumeStore store, BlockStoreServiceOptions options, ILogger<BlockStoreService> logger)
    {
        ArgumentNullException.ThrowIfNull(store);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(logger);
        if (options.Token is not null)
        {
            RpcStoreProvider.CheckToken(options.Token, "token");
        }

        if (options.ListPageSize < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(options), options.ListPageSize, "ListPageSize must be at least 1");
        }

        _store = store;
        _options = options;
        _logger = logger;
        _auth = new BearerTokenCheck(options.Token);
        _volumes = new OpenVolumeTable(store, store as IVolumeWriterLeases
            ?? throw new ArgumentException($"store '{store.Description}' keeps no writer generations (IVolumeWriterLeases), so it cannot fence stale writers", nameof(store)));
        _tickets = options.TicketKeyFile is null ? Nbd.NbdDataTickets.Ephemeral() : Nbd.NbdDataTickets.LoadOrCreate(options.TicketKeyFile);
        if (options.DataEndpoint is { } dataEndpoint)
        {
            _data = Nbd.NbdDataServer.Bind(dataEndpoint, BlockStoreProtocol.MaxPayloadBytes, logger);
            _data.Start(ResolveNbdExportAsync, options.DataTls is { } tls ? Nbd.NbdDataServer.ServerTls(tls, logger) : null);
        }
    }

    /// <summary>Where the data path is served (the bound port), or null when it is not.</summary>
    public GrpcEndpoints.GrpcEndpoint? DataEndpoint => _data?.Endpoint;

    /// <summary>True when calls must carry the shared token.</summary>
    public bool RequiresToken => _auth.Enabled;

    /// <summary>The service this class implements (Grpc.AspNetCore and the health service read it).</summary>
    public static Google.Protobuf.Reflection.ServiceDescriptor Descriptor => BlockStore.V1.BlockStore.Descriptor;

    // ---------------------------------------------------------------- server info

    public override Task<GetServerInfoResponse> GetServerInfo(GetServerInfoRequest request, ServerCallContext context)
    {
        _auth.Check(context);
        return Task.FromResult(new GetServerInfoResponse
        {
            ServerVersion = _options.ServerVersion,
            ProtocolVersion = BlockStoreProtocol.Version,
            MaxPayloadBytes = BlockStoreProtocol.MaxPayloadBytes,
            StoreDescription = _store.Description,
        });
    }

    // ---------------------------------------------------------------- control path

    public override Task<CreateVolumeResponse> CreateVolume(BlockStore.V1.CreateVolumeRequest request, ServerCallContext context) =>
        ControlAsync(context, request, static async (store, r, ct) =>
        {
            var source = r.Source is null ? null : ProtoConvert.FromProto(r.Source, "source");
            var volume = await store.CreateVolumeAsync(new Stores.CreateVolumeRequest(r.Name, r.SizeBytes, source), ct).ConfigureAwait(false);
            return new CreateVolumeResponse { Volume = ProtoConvert.ToProto(volume) };
        });

    public override async Task<DeleteVolumeResponse> DeleteVolume(DeleteVolumeRequest request, ServerCallContext context)
    {
        var response = await ControlAsync(context, request, static async (store, r, ct) =>
            new DeleteVolumeResponse { Existed = await store.DeleteVolumeAsync(r.VolumeId, ct).ConfigureAwait(false) }).ConfigureAwait(false);

        // Close the deleted image once in-flight calls finish, so its space is freed.
        _volumes.Remove(request.VolumeId);
        return response;
    }

    public override Task<GetVolumeResponse> GetVolume(GetVolumeRequest request, ServerCallContext context) =>
        ControlAsync(context, request, static async (store, r, ct) =>
            new GetVolumeResponse { Volume = ProtoConvert.ToProto(await store.GetVolumeAsync(r.VolumeId, ct).ConfigureAwait(false)) });

    public override Task<ListVolumesResponse> ListVolumes(ListVolumesRequest request, ServerCallContext context) =>
        ControlAsync(context, request, async (store, r, ct) =>
        {
            var all = await store.ListVolumesAsync(ct).ConfigureAwait(false);
            var (page, next) = Page(all, v => v.Id, r.StartingToken, r.MaxEntries);
            var response = new ListVolumesResponse { NextToken = next };
            response.Volumes.AddRange(page.Select(ProtoConvert.ToProto));
            return response;
        });

    public override Task<ExpandVolumeResponse> ExpandVolume(ExpandVolumeRequest request, ServerCallContext context) =>
        ControlAsync(context, request, static async (store, r, ct) =>
            new ExpandVolumeResponse { SizeBytes = await store.ExpandVolumeAsync(r.VolumeId, r.SizeBytes, ct).ConfigureAwait(false) });

    public override Task<CreateSnapshotResponse> CreateSnapshot(CreateSnapshotRequest request, ServerCallContext context) =>
        ControlAsync(context, request, static async (store, r, ct) =>
            new CreateSnapshotResponse { Snapshot = ProtoConvert.ToProto(await store.CreateSnapshotAsync(r.SourceVolumeId, r.Name, ct).ConfigureAwait(false)) });

    public override Task<DeleteSnapshotResponse> DeleteSnapshot(DeleteSnapshotRequest request, ServerCallContext context) =>
        ControlAsync(context, request, static async (store, r, ct) =>
            new DeleteSnapshotResponse { Existed = await store.DeleteSnapshotAsync(r.SnapshotId, ct).ConfigureAwait(false) });

    public override Task<GetSnapshotResponse> GetSnapshot(GetSnapshotRequest request, ServerCallContext context) =>
        ControlAsync(context, request, static async (store, r, ct) =>
            new GetSnapshotResponse { Snapshot = ProtoConvert.ToProto(await store.GetSnapshotAsync(r.SnapshotId, ct).ConfigureAwait(false)) });

    public override Task<ListSnapshotsResponse> ListSnapshots(ListSnapshotsRequest request, ServerCallContext context) =>
        ControlAsync(context, request, async (store, r, ct) =>
        {
            var all = await store.ListSnapshotsAsync(r.SourceVolumeId.Length == 0 ? null : r.SourceVolumeId, ct).ConfigureAwait(false);
            var (page, next) = Page(all, s => s.Id, r.StartingToken, r.MaxEntries);
            var response = new ListSnapshotsResponse { NextToken = next };
            response.Snapshots.AddRange(page.Select(ProtoConvert.ToProto));
            return response;
        });

    public override Task<GetCapacityResponse> GetCapacity(GetCapacityRequest request, ServerCallContext context) =>
        ControlAsync(context, request, static async (store, _, ct) => ProtoConvert.ToProto(await store.GetCapacityAsync(ct).ConfigureAwait(false)));

    public override Task<GetPublicationsResponse> GetPublications(GetPublicationsRequest request, ServerCallContext context) =>
        ControlAsync(context, request, static async (store, r, ct) =>
        {
            var response = new GetPublicationsResponse();
            response.Publications.AddRange((await Records<IVolumePublications>(store).GetPublicationsAsync(r.VolumeId, ct).ConfigureAwait(false)).Select(ProtoConvert.ToProto));
            return response;
        });

    public override Task<SetPublicationsResponse> SetPublications(SetPublicationsRequest request, ServerCallContext context) =>
        ControlAsync(context, request, static async (store, r, ct) =>
        {
            await Records<IVolumePublications>(store).SetPublicationsAsync(r.VolumeId, [.. r.Publications.Select(ProtoConvert.FromProto)], ct).ConfigureAwait(false);
            return new SetPublicationsResponse();
        });

    public override Task<GetQosResponse> GetQos(GetQosRequest request, ServerCallContext context) =>
        ControlAsync(context, request, static async (store, r, ct) =>
        {
            var response = new GetQosResponse();
            foreach (var (key, value) in (await Records<IVolumeQosRecord>(store).GetQosAsync(r.VolumeId, ct).ConfigureAwait(false)).ToParameters())
            {
                response.Parameters[key] = value;
            }

            return response;
        });

    public override Task<SetQosResponse> SetQos(SetQosRequest request, ServerCallContext context) =>
        ControlAsync(context, request, static async (store, r, ct) =>
        {
            await Records<IVolumeQosRecord>(store).SetQosAsync(r.VolumeId, ProtoConvert.FromProto(r.Parameters), ct).ConfigureAwait(false);
            return new SetQosResponse();
        });

    // ---------------------------------------------------------------- data path

    public override async Task<OpenVolumeResponse> OpenVolume(OpenVolumeRequest request, ServerCallContext context)
    {
        _auth.Check(context);
        var volume = await AcquireAsync(request.VolumeId, reopen: true, context.CancellationToken).ConfigureAwait(false);
        try
        {
            var info = volume.Backend.Info;
            var generation = request.ReadWrite ? await TakeWriterLeaseAsync(volume, context.CancellationToken).ConfigureAwait(false) : 0;
            VolumeOpened(_logger, request.VolumeId, info.SizeBytes, generation);
            return new OpenVolumeResponse
            {
                SizeBytes = info.SizeBytes,
                LogicalBlockSize = (uint)info.LogicalBlockSize,
                PhysicalBlockSize = (uint)info.PhysicalBlockSize,
                DiscardGranularity = (uint)info.DiscardGranularity,
                VolatileCache = (info.Features & BlockBackendFeatures.VolatileCache) != 0,
                Fua = (info.Features & BlockBackendFeatures.Fua) != 0,
                Discard = (info.Features & BlockBackendFeatures.Discard) != 0,
                WriteZeroes = (info.Features & BlockBackendFeatures.WriteZeroes) != 0,
                MaxPayloadBytes = BlockStoreProtocol.MaxPayloadBytes,
                WriterGeneration = generation,
                NbdEndpoint = _data is null ? "" : (_options.DataAdvertisedEndpoint ?? _data.Endpoint).ToString(),
                NbdExport = _data is null ? "" : _tickets.Issue(request.VolumeId, generation, request.ReadWrite),
            };
        }
        finally
        {
            volume.Release();
        }
    }

    public override async Task<ReadResponse> Read(ReadRequest request, ServerCallContext context)
    {
        _auth.Check(context);
        if (request.Length > BlockStoreProtocol.MaxPayloadBytes)
        {
            throw RpcErrorCodec.InvalidArgument("length", $"must be at most {BlockStoreProtocol.MaxPayloadBytes} bytes per call, got {request.Length}; split larger reads");
        }

        var volume = await AcquireAsync(request.VolumeId, reopen: false, context.CancellationToken).ConfigureAwait(false);
        try
        {
            // The response owns the array until it is written out, so it cannot come from a pool.
            var data = GC.AllocateUninitializedArray<byte>((int)request.Length);
            await volume.Backend.ReadAsync(request.Offset, data, context.CancellationToken).ConfigureAwait(false);
            return new ReadResponse { Data = UnsafeByteOperations.UnsafeWrap(data) };
        }
        catch (BlockBackendException e)
        {
            throw RpcErrorCodec.FromBackendException(e);
        }
        finally
        {
            volume.Release();
        }
    }

    public override async Task<WriteResponse> Write(WriteRequest request, ServerCallContext context)
    {
        _auth.Check(context);
        if (request.Data.Length > BlockStoreProtocol.MaxPayloadBytes)
        {
            throw RpcErrorCodec.InvalidArgument("data", $"must be at most {BlockStoreProtocol.MaxPayloadBytes} bytes per call, got {request.Data.Length}; split larger writes");
        }

        await MutateAsync(request.VolumeId, request.WriterGeneration, request.Attempt, context, request,
            static (backend, r) => backend.WriteAsync(r.Offset, r.Data.Memory, r.Fua ? BlockWriteFlags.Fua : BlockWriteFlags.None, CancellationToken.None)).ConfigureAwait(false);
        return WriteDone;
    }

    public override async Task<FlushResponse> Flush(FlushRequest request, ServerCallContext context)
    {
        _auth.Check(context);
        var volume = await AcquireAsync(request.VolumeId, reopen: false, context.CancellationToken).ConfigureAwait(false);
        try
        {
            MutationAdmission.CheckWriter(volume, request.WriterGeneration);
            await volume.Backend.FlushAsync(CancellationToken.None).ConfigureAwait(false);
            return FlushDone;
        }
        catch (BlockBackendException e)
        {
            throw RpcErrorCodec.FromBackendException(e);
        }
        finally
        {
            volume.Release();
        }
    }

    public override async Task<DiscardResponse> Discard(DiscardRequest request, ServerCallContext context)
    {
        _auth.Check(context);
        await MutateAsync(request.VolumeId, request.WriterGeneration, request.Attempt, context, request,
            static (backend, r) => backend.DiscardAsync(r.Offset, r.Length, CancellationToken.None)).ConfigureAwait(false);
        return DiscardDone;
    }

    public override async Task<WriteZeroesResponse> WriteZeroes(WriteZeroesRequest request, ServerCallContext context)
    {
        _auth.Check(context);
        await MutateAsync(request.VolumeId, request.WriterGeneration, request.Attempt, context, request,
            static (backend, r) => backend.WriteZeroesAsync(r.Offset, r.Length, CancellationToken.None)).ConfigureAwait(false);
        return WriteZeroesDone;
    }

    /// <summary>
    /// Runs one data mutation on an open volume inside its fence (<see cref="MutationAdmission"/>: a
    /// superseded writer is refused, a retry waits for earlier attempts), mapping backend errnos to statuses. The mutation ignores the call's cancellation: once started,
    /// a write finishes so the fence's ordering holds. <paramref name="mutation"/> is a static lambda
    /// over <paramref name="request"/>, so nothing is allocated per call for it.
    /// </summary>
    private async ValueTask MutateAsync<TRequest>(string volumeId, ulong writerGeneration, uint attempt, ServerCallContext context, TRequest request, Func<IBlockBackend, TRequest, ValueTask> mutation)
    {
        var volume = await AcquireAsync(volumeId, reopen: false, context.CancellationToken).ConfigureAwait(false);
        try
        {
            var epoch = await MutationAdmission.EnterAsync(volume, writerGeneration, attempt, _options.RetryDrainTimeout, _logger, context.CancellationToken).ConfigureAwait(false);
            try
            {
                await mutation(volume.Backend, request).ConfigureAwait(false);
            }
            finally
            {
                volume.Fence.Exit(epoch);
            }
        }
        catch (BlockBackendException e)
        {
            throw RpcErrorCodec.FromBackendException(e);
        }
        finally
        {
            volume.Release();
        }
    }

    /// <summary>Flushes and closes the open volumes. Call after the server has stopped.</summary>
    public async ValueTask DisposeAsync()
    {
        // The data path first: its connections finish the request they run, then the volumes close.
        if (_data is not null)
        {
            await _data.DisposeAsync().ConfigureAwait(false);
        }

        await _volumes.DisposeAsync().ConfigureAwait(false);
        VolumesClosed(_logger);
    }

    // ---------------------------------------------------------------- helpers

    private async Task<TResponse> ControlAsync<TRequest, TResponse>(
        ServerCallContext context, TRequest request, Func<IVolumeStore, TRequest, CancellationToken, Task<TResponse>> call)
    {
        _auth.Check(context);
        try
        {
            return await call(_store, request, context.CancellationToken).ConfigureAwait(false);
        }
        catch (StoreException e)
        {
            throw RpcErrorCodec.FromStoreException(e);
        }
        catch (IOException e) when (RpcErrorCodec.FromIOException(e) is { } mapped)
        {
            throw mapped;
        }
    }

    private ValueTask<OpenVolume> AcquireAsync(string volumeId, bool reopen, CancellationToken cancellationToken)
    {
        try
        {
            var pending = _volumes.AcquireAsync(volumeId, reopen, cancellationToken);
            return pending.IsCompletedSuccessfully ? pending : AwaitAcquireAsync(pending);
        }
        catch (StoreException e)
        {
            throw RpcErrorCodec.FromStoreException(e);
        }

        static async ValueTask<OpenVolume> AwaitAcquireAsync(ValueTask<OpenVolume> pending)
        {
            try
            {
                return await pending.ConfigureAwait(false);
            }
            catch (StoreException e)
            {
                throw RpcErrorCodec.FromStoreException(e);
            }
        }
    }

    /// <summary>
    /// The open an NBD connection's export name grants: a ticket this server issued, optionally followed by
    /// <c>#SLOT</c> (the client's connection index); null for any other name or a volume that is gone.
    /// A superseded writer's ticket still resolves: its reads work and its mutations are refused, as on gRPC.
    /// </summary>
    internal async ValueTask<Nbd.NbdDataExport?> ResolveNbdExportAsync(string name, CancellationToken cancellationToken)
    {
        var slot = -1;
        var hash = name.LastIndexOf('#');
        if (hash >= 0)
        {
            if (!int.TryParse(name.AsSpan(hash + 1), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out slot) || slot > 4095)
            {
                return null;
            }

            name = name[..hash];
        }

        if (!_tickets.TryRead(name, out var volumeId, out var generation, out var readWrite))
        {
            return null;
        }

        try
        {
            var volume = await _volumes.AcquireAsync(volumeId, reopen: false, cancellationToken).ConfigureAwait(false);
            return new Nbd.NbdDataExport(volume, generation, readWrite, name, slot);
        }
        catch (StoreException)
        {
            return null;
        }
    }

    /// <summary>Takes the writer lease for a read-write open (<see cref="OpenVolumeTable.TakeWriterLeaseAsync"/>).</summary>
    private async Task<ulong> TakeWriterLeaseAsync(OpenVolume volume, CancellationToken cancellationToken)
    {
        try
        {
            var generation = await _volumes.TakeWriterLeaseAsync(volume, _options.RetryDrainTimeout, cancellationToken).ConfigureAwait(false);
            WriterLeaseTaken(_logger, volume.VolumeId, generation);
            return generation;
        }
        catch (StoreException e)
        {
            throw RpcErrorCodec.FromStoreException(e);
        }
        catch (TimeoutException e)
        {
            throw new RpcException(new Status(StatusCode.Unavailable, e.Message + "; retry later"));
        }
    }

    /// <summary>A record interface the store implements; UNIMPLEMENTED when it keeps no such record.</summary>
    private static TRecords Records<TRecords>(IVolumeStore store) where TRecords : class =>
        store as TRecords ?? throw new RpcException(new Status(StatusCode.Unimplemented, $"store '{store.Description}' keeps no {typeof(TRecords).Name} records"));

    /// <summary>One page of an ID-ordered list: entries after <paramref name="startingToken"/>, at most <paramref name="maxEntries"/>.</summary>
    private (IEnumerable<T> Page, string Next) Page<T>(IReadOnlyList<T> all, Func<T, string> id, string startingToken, uint maxEntries)
    {
        if (startingToken.Length > 0 && !VolumeIds.IsValidId(startingToken))
        {
            throw new StoreParameterException("startingToken", "must be empty or the next_token of the previous page");
        }

        var size = maxEntries == 0 ? _options.ListPageSize : (int)Math.Min(maxEntries, (uint)_options.ListPageSize);
        var rest = all.Where(e => string.CompareOrdinal(id(e), startingToken) > 0).Take(size + 1).ToList();
        return rest.Count > size ? (rest.Take(size), id(rest[size - 1])) : (rest, "");
    }

    [LoggerMessage(EventId = 400, Level = LogLevel.Debug, Message = "volume {VolumeId} opened ({SizeBytes} bytes, writer generation {WriterGeneration})")]
    private static partial void VolumeOpened(ILogger logger, string volumeId, long sizeBytes, ulong writerGeneration);

    [LoggerMessage(EventId = 404, Level = LogLevel.Information, Message = "volume {VolumeId}: opened for writing, writer generation {WriterGeneration}; older writers are refused")]
    private static partial void WriterLeaseTaken(ILogger logger, string volumeId, ulong writerGeneration);

    [LoggerMessage(EventId = 401, Level = LogLevel.Information, Message = "volume {VolumeId}: retry {Attempt} of a mutation waited {WaitedMs} ms for earlier mutations to finish")]
    internal static partial void RetryOrdered(ILogger logger, string volumeId, uint attempt, long waitedMs);

    [LoggerMessage(EventId = 402, Level = LogLevel.Information, Message = "stopped; open volumes flushed and closed")]
    private static partial void VolumesClosed(ILogger logger);
}
