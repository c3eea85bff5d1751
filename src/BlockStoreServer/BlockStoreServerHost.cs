using System.Net;
using Microsoft.Extensions.Logging;
using UblkCsi.BlockStore.V1;
using UblkCsi.GrpcHosting;
using UblkCsi.GrpcHosting.Hosting;
using UblkCsi.GrpcHosting.Logging;
using UblkCsi.Stores;
using UblkCsi.Stores.Files;
using UblkCsi.Stores.Rpc;
using UblkCsi.Stores.Rpc.Server;

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
    public static async Task<int> RunAsync(HostInvocation invocation)
    {
        BlockStoreServerOptions options;
        try
        {
            var line = HostCommandLine.Parse(invocation.Args, invocation.Environment, BlockStoreServerOptions.Declarations);
            if (line.Has("--help"))
            {
                await invocation.Output.WriteLineAsync(HostCommandLine.Usage(Program, BlockStoreServerOptions.Declarations));
                return 0;
            }

            if (line.Has("--version"))
            {
                await invocation.Output.WriteLineAsync($"{Program} {Version}");
                return 0;
            }

            options = BlockStoreServerOptions.From(line);
        }
        catch (HostOptionException e)
        {
            await invocation.Error.WriteLineAsync($"{Program}: {e.Message}");
            return GrpcHostRunner.InvalidOptionsExitCode;
        }

        using var loggerFactory = HostLogging.Create(options.LogLevel, options.LogFormat, invocation.ConfigureLogging);
        var logger = loggerFactory.CreateLogger(Program);

        string? token;
        FileStore store;
        try
        {
            token = options.TokenFile is null ? null : TokenFile.Read(options.TokenFile);
            store = new FileStore(new FileStoreOptions(options.Root, options.Reflink));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or StoreException)
        {
            return await StartFailedAsync(invocation, logger, e);
        }

        await using var ownedStore = store;
        var service = new BlockStoreService(store, new BlockStoreServiceOptions
        {
            Token = token,
            ServerVersion = $"{Program} {Version}",
        }, loggerFactory.CreateLogger<BlockStoreService>());
        try
        {
            return await ServeAsync(invocation, options, service, token is not null, loggerFactory, logger);
        }
        finally
        {
            // The server has stopped, so no call runs any more: make every open volume durable and close it.
            await service.DisposeAsync();
            Stopped(logger);
        }
    }

    private static async Task<int> ServeAsync(
        HostInvocation invocation, BlockStoreServerOptions options, BlockStoreService service, bool authenticated, ILoggerFactory loggerFactory, ILogger logger)
    {
        await using var server = new GrpcServer(new GrpcServerOptions
        {
            Endpoint = options.Listen,
            MaxReceiveMessageBytes = BlockStoreProtocol.MaxMessageBytes,
            SensitiveFields = new SensitiveFieldPolicy(BlockstoreExtensions.Sensitive),
            ShutdownTimeout = options.ShutdownTimeout,
        }, loggerFactory);
        try
        {
            server.AddService(BlockStoreProtocol.Service, service);
            await server.StartAsync(invocation.Stop);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or System.Net.Sockets.SocketException)
        {
            return await StartFailedAsync(invocation, logger, e);
        }
        catch (OperationCanceledException) when (invocation.Stop.IsCancellationRequested)
        {
            return 0;
        }

        Serving(logger, server.Endpoint.ToString(), options.Root, authenticated ? "shared token" : "none");
        if (!authenticated && IsReachableFromOtherHosts(server.Endpoint))
        {
            Unauthenticated(logger, server.Endpoint.ToString());
        }

        if (options.TokenFile is not null && TokenFile.IsReadableByOthers(options.TokenFile))
        {
            TokenFileTooOpen(logger, options.TokenFile);
        }

        invocation.Started?.Invoke(server.Endpoint);
        try
        {
            await Task.Delay(Timeout.Infinite, invocation.Stop);
        }
        catch (OperationCanceledException)
        {
        }

        ShuttingDown(logger);
        await server.StopAsync();
        return 0;
    }

    private static string Version => GrpcHostRunner.InformationalVersion(typeof(BlockStoreServerHost).Assembly);

    private static async Task<int> StartFailedAsync(HostInvocation invocation, ILogger logger, Exception e)
    {
        StartFailed(logger, e.Message);
        await invocation.Error.WriteLineAsync($"{Program}: cannot start: {e.Message}");
        return GrpcHostRunner.StartFailedExitCode;
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

    [LoggerMessage(EventId = 4, Level = LogLevel.Information, Message = "stopping: finishing in-flight calls")]
    private static partial void ShuttingDown(ILogger logger);

    [LoggerMessage(EventId = 5, Level = LogLevel.Information, Message = "stopped; open volumes flushed and closed")]
    private static partial void Stopped(ILogger logger);

    [LoggerMessage(EventId = 6, Level = LogLevel.Critical, Message = "cannot start: {Reason}")]
    private static partial void StartFailed(ILogger logger, string reason);
}
