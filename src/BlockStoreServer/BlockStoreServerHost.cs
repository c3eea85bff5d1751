using UblkCsi.GrpcEndpoints;
using System.Net;
using Microsoft.Extensions.Logging;
using UblkCsi.BlockStore.V1;
using UblkCsi.GrpcHosting;
using UblkCsi.Hosting;
using UblkCsi.BlockStoreServer.Service;
using UblkCsi.GrpcHosting.Logging;
using UblkCsi.Stores;
using UblkCsi.Stores.Files;
using UblkCsi.Stores.Rpc;

namespace UblkCsi.BlockStoreServer;

/// <summary>
/// The ublk-blockstore-server process: a file store served over the block-store protocol. Exit
/// codes: 0 clean stop (SIGTERM/SIGINT) or --help/--version, 1 cannot start (endpoint taken, token
/// file unreadable, root unusable), 2 invalid options. A stop lets in-flight calls finish, then
/// flushes (fdatasync) and closes every open volume.
/// </summary>
public static partial class BlockStoreServerHost
{
    /// <summary>The program name used in messages and --version.</summary>
    public const string Program = "ublk-blockstore-server";

    /// <summary>Runs the server until <see cref="HostInvocation.Stop"/>; returns the process exit code.</summary>
    public static Task<int> RunAsync(HostInvocation invocation) => HostRunner.RunAsync(
        Program,
        invocation,
        BlockStoreServerOptions.Declarations,
        BlockStoreServerOptions.From,
        options => new LogOptions(options.LogLevel, options.LogFormat),
        StartAsync);

    private static async Task<IRunningHost> StartAsync(BlockStoreServerOptions options, ILoggerFactory loggerFactory, CancellationToken cancellationToken)
    {
        var logger = loggerFactory.CreateLogger(Program);
        string? token;
        FileStore store;
        try
        {
            token = options.TokenFile is null ? null : TokenFile.Read(options.TokenFile);
            store = new FileStore(new FileStoreOptions(options.Root, options.Reflink));
        }
        catch (StoreException e)
        {
            throw new HostStartException(e.Message, e);
        }

        var service = new BlockStoreService(store, new BlockStoreServiceOptions
        {
            Token = token,
            ServerVersion = $"{Program} {HostRunner.InformationalVersion(typeof(BlockStoreServerHost).Assembly)}",
        }, loggerFactory.CreateLogger<BlockStoreService>());

        // Disposed in reverse order once the server has stopped and no call runs any more: the service
        // makes every open volume durable and closes it, then the store goes.
        var host = await GrpcRunningHost.StartAsync(
            new GrpcServerOptions
            {
                Endpoint = options.Listen,
                MaxReceiveMessageBytes = BlockStoreProtocol.MaxMessageBytes,
                SensitiveFields = new SensitiveFieldPolicy(BlockstoreExtensions.Sensitive),
                ShutdownTimeout = options.ShutdownTimeout,
            },
            loggerFactory,
            server => server.AddService(service),
            cancellationToken,
            store,
            service);

        var endpoint = GrpcEndpoint.Parse(host.Address);
        Serving(logger, endpoint.ToString(), options.Root, token is not null ? "shared token" : "none");
        if (token is null && IsReachableFromOtherHosts(endpoint))
        {
            Unauthenticated(logger, endpoint.ToString());
        }

        if (options.TokenFile is not null && TokenFile.IsReadableByOthers(options.TokenFile))
        {
            TokenFileTooOpen(logger, options.TokenFile);
        }

        return host;
    }

    private static bool IsReachableFromOtherHosts(GrpcEndpoint endpoint) =>
        endpoint.Kind == GrpcEndpointKind.Tcp
        && !(string.Equals(endpoint.Host, "localhost", StringComparison.OrdinalIgnoreCase)
             || (IPAddress.TryParse(endpoint.Host, out var address) && IPAddress.IsLoopback(address)));

    [LoggerMessage(EventId = 1, Level = LogLevel.Information, Message = "serving volumes of {Root} on {Endpoint} (authentication: {Authentication})")]
    private static partial void Serving(ILogger logger, string endpoint, string root, string authentication);

    [LoggerMessage(EventId = 2, Level = LogLevel.Warning, Message = "{Endpoint} is reachable from other hosts and no --token-file is set: anyone who can connect can read and overwrite every volume")]
    private static partial void Unauthenticated(ILogger logger, string endpoint);

    [LoggerMessage(EventId = 3, Level = LogLevel.Warning, Message = "token file {Path} is readable by group or others; restrict it (chmod 600)")]
    private static partial void TokenFileTooOpen(ILogger logger, string path);



}
