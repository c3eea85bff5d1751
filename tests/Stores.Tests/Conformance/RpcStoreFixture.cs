using UblkCsi.Stores;
using UblkCsi.Stores.Files;
using UblkCsi.TestSupport;

namespace UblkCsi.Stores.Tests.Conformance;

/// <summary>
/// The rpc store against a real block-store server on TCP loopback: a file store behind the
/// protocol's service, with token authentication on. Reopening restarts the server (a new process
/// would see the same: nothing but the files survives) and connects a new client.
/// </summary>
public class RpcStoreFixture : StoreFixture
{
    private const string Token = "conformance-token-7f3a";
    private readonly Dictionary<StoreContext, LoopbackBlockStoreServer> _servers = [];

    public override string Type => "rpc";

    /// <summary>How the server's file store reaches its images: O_DIRECT where the filesystem allows it.</summary>
    protected virtual DirectIoMode ServerDirectIo => DirectIoMode.Auto;

    public override async Task<StoreContext> CreateStoreAsync()
    {
        var root = TempDirectory.Create("rpc-store");
        var server = await LoopbackBlockStoreServer.StartAsync(root, Token, directIo: ServerDirectIo);
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

/// <summary>
/// The same against a server that reads through its page cache (ublk-blockstore-server's default), which
/// answers a stream read by reading straight into the response's transport buffer.
/// </summary>
public sealed class RpcPageCacheStoreFixture : RpcStoreFixture
{
    protected override DirectIoMode ServerDirectIo => DirectIoMode.Off;
}

public sealed class RpcPageCacheStoreConformance(RpcPageCacheStoreFixture fixture) : StoreConformanceTests(fixture), IClassFixture<RpcPageCacheStoreFixture>;
