using UblkCsi.GrpcEndpoints;
using Microsoft.Extensions.Logging.Abstractions;
using UblkCsi.BlockStore.V1;
using UblkCsi.GrpcHosting;
using UblkCsi.GrpcHosting.Logging;
using UblkCsi.Stores;
using UblkCsi.Stores.Files;
using UblkCsi.Stores.Rpc;
using UblkCsi.BlockStoreServer.Service;

namespace UblkCsi.Stores.Tests.Conformance;

/// <summary>
/// The rpc store against a real block-store server on TCP loopback: a file store behind the
/// protocol's service, with token authentication on. Reopening restarts the server (a new process
/// would see the same: nothing but the files survives) and connects a new client.
/// </summary>
public sealed class RpcStoreFixture : StoreFixture
{
    private const string Token = "conformance-token-7f3a";
    private readonly Dictionary<StoreContext, LoopbackBlockStoreServer> _servers = [];

    public override string Type => "rpc";

    public override async Task<StoreContext> CreateStoreAsync()
    {
        var root = TempDirectory.Create("rpc-store");
        var server = await LoopbackBlockStoreServer.StartAsync(root, Token);
        var parameters = new Dictionary<string, string> { ["endpoint"] = server.Endpoint.ToString() };
        var secrets = new Dictionary<string, string> { ["token"] = Token };
        var context = new StoreContext(StoreRegistry.Open(Type, parameters, secrets), parameters, secrets);
        lock (_servers)
        {
            _servers[context] = server;
        }

        context.Cleanup.Add(() =>
        {
            LoopbackBlockStoreServer current;
            lock (_servers)
            {
                current = _servers[context];
                _servers.Remove(context);
            }

            current.DisposeAsync().AsTask().GetAwaiter().GetResult();
            Directory.Delete(root, recursive: true);
        });
        return context;
    }

    public override async Task<IVolumeStore> ReopenAsync(StoreContext context)
    {
        await context.Store.DisposeAsync();
        LoopbackBlockStoreServer old;
        lock (_servers)
        {
            old = _servers[context];
        }

        var restarted = await old.RestartAsync();
        lock (_servers)
        {
            _servers[context] = restarted;
        }

        context.Store = StoreRegistry.Open(Type, context.Parameters, context.Secrets);
        return context.Store;
    }

    public override IEnumerable<(Dictionary<string, string>, Dictionary<string, string>, string)> BadParameters(StoreContext context)
    {
        var endpoint = context.Parameters["endpoint"];
        yield return (new(), [], "endpoint");
        yield return (new() { ["endpoint"] = "http://127.0.0.1:9400" }, [], "endpoint");
        yield return (new() { ["endpoint"] = "tcp://127.0.0.1:0" }, [], "endpoint");
        yield return (new() { ["endpoint"] = "unix://relative.sock" }, [], "endpoint");
        yield return (new() { ["endpoint"] = endpoint, ["retryAttempts"] = "0" }, [], "retryAttempts");
        yield return (new() { ["endpoint"] = endpoint, ["root"] = "/srv" }, [], "root");
        yield return (new() { ["endpoint"] = endpoint }, new() { ["password"] = "hunter2-secret" }, "password");
        yield return (new() { ["endpoint"] = endpoint }, new() { ["token"] = "two words-secret" }, "token");
    }
}

public sealed class RpcStoreConformance(RpcStoreFixture fixture) : StoreConformanceTests(fixture), IClassFixture<RpcStoreFixture>;

/// <summary>An in-process block-store server (file store + service + gRPC server) on a real loopback TCP port.</summary>
public sealed class LoopbackBlockStoreServer : IAsyncDisposable
{
    private readonly FileStore _store;
    private readonly BlockStoreService _service;
    private readonly GrpcServer _server;
    private readonly string _root;
    private readonly string? _token;

    private LoopbackBlockStoreServer(string root, string? token, FileStore store, BlockStoreService service, GrpcServer server)
    {
        _root = root;
        _token = token;
        _store = store;
        _service = service;
        _server = server;
    }

    public GrpcEndpoint Endpoint => _server.Endpoint;

    /// <summary>Starts a server for the file store at <paramref name="root"/>; port 0 picks a free port.</summary>
    public static async Task<LoopbackBlockStoreServer> StartAsync(string root, string? token, int port = 0)
    {
        var store = new FileStore(new FileStoreOptions(root));
        var service = new BlockStoreService(store, new BlockStoreServiceOptions { Token = token }, NullLogger<BlockStoreService>.Instance);
        var server = new GrpcServer(new GrpcServerOptions
        {
            Endpoint = GrpcEndpoint.Tcp("127.0.0.1", port),
            MaxReceiveMessageBytes = BlockStoreProtocol.MaxMessageBytes,
            SensitiveFields = new SensitiveFieldPolicy(BlockstoreExtensions.Sensitive),
        }, NullLoggerFactory.Instance);
        server.AddService(service);
        await server.StartAsync();
        return new LoopbackBlockStoreServer(root, token, store, service, server);
    }

    /// <summary>Stops this server and starts a fresh one (new store, service and listener) on the same port.</summary>
    public async Task<LoopbackBlockStoreServer> RestartAsync()
    {
        var port = Endpoint.Port;
        await DisposeAsync();
        return await StartAsync(_root, _token, port);
    }

    public async ValueTask DisposeAsync()
    {
        await _server.DisposeAsync();
        await _service.DisposeAsync();
        await _store.DisposeAsync();
    }
}
