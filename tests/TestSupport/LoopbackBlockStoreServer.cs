using Microsoft.Extensions.Logging.Abstractions;
using UblkCsi.BlockStore.V1;
using UblkCsi.BlockStoreServer.Service;
using UblkCsi.GrpcEndpoints;
using UblkCsi.GrpcHosting;
using UblkCsi.GrpcHosting.Logging;
using UblkCsi.Stores.Files;
using UblkCsi.Stores.Rpc;

namespace UblkCsi.TestSupport;

/// <summary>An in-process block-store server (file store + service + gRPC server) on a real loopback TCP port.</summary>
public sealed class LoopbackBlockStoreServer : IAsyncDisposable
{
    private readonly FileStore _store;
    private readonly BlockStoreService _service;
    private readonly GrpcServer _server;
    private readonly string _root;
    private readonly string? _token;
    private readonly DirectIoMode _directIo;

    private LoopbackBlockStoreServer(string root, string? token, DirectIoMode directIo, FileStore store, BlockStoreService service, GrpcServer server)
    {
        _root = root;
        _token = token;
        _directIo = directIo;
        _store = store;
        _service = service;
        _server = server;
    }

    public GrpcEndpoint Endpoint => _server.Endpoint;

    /// <summary>Where the data path (NBD) is served.</summary>
    public GrpcEndpoint DataEndpoint => _service.DataEndpoint!;

    /// <summary>
    /// Starts a server for the file store at <paramref name="root"/>; port 0 picks a free port;
    /// <paramref name="directIo"/> is how the store reaches its images (ublk-blockstore-server's default is Off).
    /// </summary>
    public static async Task<LoopbackBlockStoreServer> StartAsync(string root, string? token, int port = 0, DirectIoMode directIo = DirectIoMode.Auto, int dataPort = 0)
    {
        var store = new FileStore(new FileStoreOptions(root, DirectIo: directIo, ExclusiveWriters: false));
        // The ticket key in the root, as the server keeps it: a restarted server accepts the tickets clients hold.
        var service = new BlockStoreService(store, new BlockStoreServiceOptions
        {
            Token = token,
            DataEndpoint = GrpcEndpoint.Tcp("127.0.0.1", dataPort),
            TicketKeyFile = Path.Combine(root, BlockStoreServiceOptions.TicketKeyFileName),
        }, NullLogger<BlockStoreService>.Instance);
        var server = new GrpcServer(new GrpcServerOptions
        {
            Endpoint = GrpcEndpoint.Tcp("127.0.0.1", port),
            MaxReceiveMessageBytes = BlockStoreProtocol.MaxMessageBytes,
            SensitiveFields = new SensitiveFieldPolicy(BlockstoreExtensions.Sensitive),
        }, NullLoggerFactory.Instance);
        server.AddService(service);
        await server.StartAsync();
        return new LoopbackBlockStoreServer(root, token, directIo, store, service, server);
    }

    /// <summary>Stops this server and starts a fresh one (new store, service and listener) on the same port.</summary>
    public async Task<LoopbackBlockStoreServer> RestartAsync()
    {
        var port = Endpoint.Port;
        var dataPort = DataEndpoint.Port;
        await DisposeAsync();
        return await StartAsync(_root, _token, port, _directIo, dataPort);
    }

    public async ValueTask DisposeAsync()
    {
        await _server.DisposeAsync();
        await _service.DisposeAsync();
        await _store.DisposeAsync();
    }
}
