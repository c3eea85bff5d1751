using UblkCsi.GrpcEndpoints;
using Microsoft.Extensions.Logging;
using UblkCsi.BlockStore.V1;
using UblkCsi.GrpcHosting;
using UblkCsi.GrpcHosting.Logging;
using UblkCsi.Stores;
using UblkCsi.Stores.Rpc;
using UblkCsi.BlockStoreServer.Service;

namespace UblkCsi.BlockStoreServer.Tests.Support;

/// <summary>The block-store service over any store, on a real loopback TCP port, with captured logs.</summary>
public sealed class ServiceHost : IAsyncDisposable
{
    private readonly ILoggerFactory _loggers;
    private readonly GrpcServer _server;

    private ServiceHost(ILoggerFactory loggers, GrpcServer server, BlockStoreService service, CapturedLogs logs)
    {
        _loggers = loggers;
        _server = server;
        Service = service;
        Logs = logs;
    }

    public BlockStoreService Service { get; }

    public CapturedLogs Logs { get; }

    public GrpcEndpoint Endpoint => _server.Endpoint;

    /// <param name="dataPort">Port of the data path (NBD); 0 picks a free one.</param>
    /// <param name="advertisedDataPort">Port OpenVolume names for the data path (a proxy in front of it), or null for the bound one.</param>
    public static async Task<ServiceHost> StartAsync(IVolumeStore store, string? token = null, int listPageSize = 1000, GrpcServerTls? tls = null, int dataPort = 0, int? advertisedDataPort = null)
    {
        var logs = new CapturedLogs();
        var loggers = LoggerFactory.Create(logs.AddTo);
        var options = new BlockStoreServiceOptions { Token = token, ListPageSize = listPageSize, DataEndpoint = GrpcEndpoint.Tcp("127.0.0.1", dataPort), DataTls = tls,
            DataAdvertisedEndpoint = advertisedDataPort is { } advertised ? GrpcEndpoint.Tcp("127.0.0.1", advertised) : null };
        var service = new BlockStoreService(store, options, loggers.CreateLogger<BlockStoreService>());
        var server = new GrpcServer(new GrpcServerOptions
        {
            Endpoint = GrpcEndpoint.Tcp("127.0.0.1", 0),
            MaxReceiveMessageBytes = BlockStoreProtocol.MaxMessageBytes,
            SensitiveFields = new SensitiveFieldPolicy(BlockstoreExtensions.Sensitive),
            Tls = tls,
        }, loggers);
        server.AddService(service);
        await server.StartAsync();
        return new ServiceHost(loggers, server, service, logs);
    }

    public async ValueTask DisposeAsync()
    {
        await _server.DisposeAsync();
        await Service.DisposeAsync();
        _loggers.Dispose();
    }
}
