using Microsoft.Extensions.Logging.Abstractions;
using UblkCsi.GrpcEndpoints;
using BlockstoreExtensions = UblkCsi.BlockStore.V1.BlockstoreExtensions;
using UblkCsi.Engine;
using UblkCsi.GrpcHosting;
using UblkCsi.GrpcHosting.Logging;
using UblkCsi.Stores;
using UblkCsi.Stores.Files;
using UblkCsi.Stores.Rpc;
using UblkCsi.BlockStoreServer.Service;

using UblkCsi.Cli;

namespace UblkCsi.Benchmarks;

/// <summary>
/// The rpc row of <c>ublk-csi bench-stores</c>: a block-store server (the file store behind the
/// protocol, as ublk-blockstore-server runs it) on a loopback TCP port in this process, the rpc
/// store connected to it (the server reads through its page cache, as it does by default), and, as the raw baseline, a volume of a file store opened directly in a
/// sibling directory of the same filesystem. The difference between the two is the protocol's cost:
/// serialization, HTTP/2 framing, loopback TCP and the server's dispatch.
/// </summary>
internal sealed class RpcBenchTarget : IAsyncDisposable
{
    private readonly GrpcServer _server;
    private readonly BlockStoreService _service;
    private readonly FileStore _servedStore;
    private readonly FileStore _directStore;

    private RpcBenchTarget(GrpcServer server, BlockStoreService service, FileStore servedStore, FileStore directStore, RpcStore store, IBlockBackend baseline)
    {
        _server = server;
        _service = service;
        _servedStore = servedStore;
        _directStore = directStore;
        Store = store;
        Baseline = baseline;
    }

    /// <summary>The rpc store under test.</summary>
    public IVolumeStore Store { get; }

    /// <summary>A volume of the same size in a file store opened directly, in the same work directory.</summary>
    public IBlockBackend Baseline { get; }

    /// <summary>What the baseline is, for the table.</summary>
    public static string BaselineName => "file store direct, same dir";

    /// <summary>Starts the server under <paramref name="workDirectory"/> and opens both sides.</summary>
    public static async Task<RpcBenchTarget> StartAsync(string workDirectory, long sizeBytes)
    {
        // Through the page cache, as ublk-blockstore-server runs by default.
        var servedStore = new FileStore(new FileStoreOptions(Directory.CreateDirectory(Path.Combine(workDirectory, "rpc-served")).FullName, DirectIo: DirectIoMode.Off));
        var directStore = new FileStore(new FileStoreOptions(Directory.CreateDirectory(Path.Combine(workDirectory, "rpc-baseline")).FullName));
        var service = new BlockStoreService(servedStore, new BlockStoreServiceOptions { DataEndpoint = GrpcEndpoint.Tcp("127.0.0.1", 0) }, NullLogger<BlockStoreService>.Instance);
        var server = new GrpcServer(new GrpcServerOptions
        {
            Endpoint = GrpcEndpoint.Tcp("127.0.0.1", 0),
            MaxReceiveMessageBytes = BlockStoreProtocol.MaxMessageBytes,
            SensitiveFields = new SensitiveFieldPolicy(BlockstoreExtensions.Sensitive),
        }, NullLoggerFactory.Instance);
        server.AddService(service);
        await server.StartAsync();

        var volume = await directStore.CreateVolumeAsync(new CreateVolumeRequest("baseline", sizeBytes));
        var baseline = await directStore.OpenVolumeAsync(volume.Id);
        var store = new RpcStore(new RpcStoreOptions(server.Endpoint));
        return new RpcBenchTarget(server, service, servedStore, directStore, store, baseline);
    }

    public async ValueTask DisposeAsync()
    {
        await Baseline.DisposeAsync();
        await Store.DisposeAsync();
        await _server.DisposeAsync();
        await _service.DisposeAsync();
        await _servedStore.DisposeAsync();
        await _directStore.DisposeAsync();
    }
}
