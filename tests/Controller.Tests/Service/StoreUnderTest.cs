using UblkCsi.Stores;
using UblkCsi.Stores.S3;
using UblkCsi.TestSupport;

namespace UblkCsi.Controller.Tests.Service;

/// <summary>
/// One store the controller suite runs against: the StorageClass parameters naming it and the
/// provisioner secrets. Every test gets a fresh, isolated location (directory, bucket prefix).
/// </summary>
public abstract class StoreUnderTest : IAsyncLifetime
{
    /// <summary>Store types the service under test may be asked for.</summary>
    public virtual IReadOnlyList<string> StoreTypes => ["file", "s3", "rpc", "memory"];

    /// <summary>False when the store lives in the controller's memory: a restarted controller then keeps its catalog.</summary>
    public virtual bool SurvivesRestart => true;

    /// <summary>A new isolated location: StorageClass parameters (with <c>store</c>) and secrets.</summary>
    public abstract (Dictionary<string, string> Parameters, Dictionary<string, string> Secrets) NewLocation();

    public virtual Task InitializeAsync() => Task.CompletedTask;

    public virtual Task DisposeAsync() => Task.CompletedTask;
}

/// <summary>The memory store: one instance per location, kept open by the controller's catalog.</summary>
public sealed class MemoryStoreUnderTest : StoreUnderTest
{
    private int _next;

    public override bool SurvivesRestart => false;

    // The memory store has no location of its own; distinct capacities make distinct stores.
    public override (Dictionary<string, string>, Dictionary<string, string>) NewLocation() =>
        (new() { ["store"] = "memory", ["capacity"] = $"{1000 + Interlocked.Increment(ref _next)}Gi" }, new());
}

/// <summary>The file store on a real directory.</summary>
public sealed class FileStoreUnderTest : StoreUnderTest
{
    private readonly List<string> _roots = [];

    public override (Dictionary<string, string>, Dictionary<string, string>) NewLocation()
    {
        var root = Directory.CreateTempSubdirectory("ublk-ctrl-file-").FullName;
        lock (_roots)
        {
            _roots.Add(root);
        }

        return (new() { ["store"] = "file", ["root"] = root }, new());
    }

    public override Task DisposeAsync()
    {
        foreach (var root in _roots)
        {
            Directory.Delete(root, recursive: true);
        }

        return Task.CompletedTask;
    }
}

/// <summary>The s3 store on a real s3rver (tools/s3rver, or UBLK_CSI_S3RVER_DIR).</summary>
public sealed class S3StoreUnderTest : StoreUnderTest
{
    private LocalS3Server? _server;
    private readonly string _cache = Directory.CreateTempSubdirectory("ublk-ctrl-s3cache-").FullName;

    public override async Task InitializeAsync() => _server = await LocalS3Server.StartAsync();

    public override async Task DisposeAsync()
    {
        if (_server is not null)
        {
            await _server.DisposeAsync();
        }

        Directory.Delete(_cache, recursive: true);
    }

    public override (Dictionary<string, string>, Dictionary<string, string>) NewLocation()
    {
        var parameters = _server!.StoreParameters($"ctrl-{Guid.NewGuid():N}", _cache);
        parameters["store"] = "s3";
        parameters["chunkSize"] = "1Mi";
        return (parameters, LocalS3Server.StoreSecrets());
    }
}

/// <summary>
/// The rpc store against real block-store servers on loopback TCP (a file store behind the protocol):
/// one server per location, so locations are isolated like the other stores'. No token: CSI's
/// GetCapacity carries no secrets (the rpc conformance suite covers tokens).
/// </summary>
public sealed class RpcStoreUnderTest : StoreUnderTest
{
    private readonly List<(LoopbackBlockStoreServer Server, string Root)> _servers = [];

    public override (Dictionary<string, string>, Dictionary<string, string>) NewLocation()
    {
        var root = Directory.CreateTempSubdirectory("ublk-ctrl-rpc-").FullName;
        var server = LoopbackBlockStoreServer.StartAsync(root, token: null).GetAwaiter().GetResult();
        lock (_servers)
        {
            _servers.Add((server, root));
        }

        return (new() { ["store"] = "rpc", ["endpoint"] = server.Endpoint.ToString() }, new());
    }

    public override async Task DisposeAsync()
    {
        foreach (var (server, root) in _servers)
        {
            await server.DisposeAsync();
            Directory.Delete(root, recursive: true);
        }
    }
}
