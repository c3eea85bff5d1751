using UblkCsi.GrpcEndpoints;
using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
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
        GrpcServerTls? tls;
        try
        {
            token = options.TokenFile is null ? null : TokenFile.Read(options.TokenFile);
            tls = LoadTls(options, loggerFactory);
            // The server arbitrates its clients with writer leases, and each client open reopens the
            // image while the previous handle drains: the image lock would refuse its own reopen.
            store = new FileStore(new FileStoreOptions(options.Root, options.Reflink, options.DirectIo, ExclusiveWriters: false));
        }
        catch (Exception e) when (e is StoreException or IOException)
        {
            throw new HostStartException(e.Message, e);
        }

        BlockStoreService service;
        try
        {
            service = new BlockStoreService(store, new BlockStoreServiceOptions
        {
            Token = token,
            ServerVersion = $"{Program} {HostRunner.InformationalVersion(typeof(BlockStoreServerHost).Assembly)}",
            DataEndpoint = options.DataEndpoint,
            DataTls = tls,
            TicketKeyFile = Path.Combine(options.Root, BlockStoreServiceOptions.TicketKeyFileName),
        }, loggerFactory.CreateLogger<BlockStoreService>());
        }
        catch (IOException e)
        {
            await store.DisposeAsync().ConfigureAwait(false);
            throw new HostStartException(e.Message, e);
        }

        NbdServing(logger, service.DataEndpoint!.ToString());

        // Disposed in reverse order once the server has stopped and no call runs any more: the service
        // makes every open volume durable and closes it, then the store goes.
        var host = await GrpcRunningHost.StartAsync(
            new GrpcServerOptions
            {
                Endpoint = options.Listen,
                MaxReceiveMessageBytes = BlockStoreProtocol.MaxMessageBytes,
                SensitiveFields = new SensitiveFieldPolicy(BlockstoreExtensions.Sensitive),
                ShutdownTimeout = options.ShutdownTimeout,
                Tls = tls,
            },
            loggerFactory,
            server => server.AddService(service),
            cancellationToken,
            store,
            service);

        var endpoint = GrpcEndpoint.Parse(host.Address);
        var authentication = (token is not null, tls?.ClientCertificateAuthorities is not null) switch
        {
            (true, true) => "shared token and client certificates",
            (true, false) => "shared token",
            (false, true) => "client certificates",
            _ => "none",
        };
        Serving(logger, endpoint.ToString(), options.Root, authentication, tls is null ? "cleartext" : "TLS");
        if (authentication == "none" && !endpoint.IsLocal)
        {
            Unauthenticated(logger, endpoint.ToString());
        }

        if (token is not null && tls is null && !endpoint.IsLocal)
        {
            TokenInCleartext(logger, endpoint.ToString());
        }

        if (options.TokenFile is not null && TokenFile.IsReadableByOthers(options.TokenFile))
        {
            TokenFileTooOpen(logger, options.TokenFile);
        }

        return host;
    }

    /// <summary>The TLS settings from the options, or null; the certificate pair is loaded now (and again when it changes).</summary>
    private static GrpcServerTls? LoadTls(BlockStoreServerOptions options, ILoggerFactory loggerFactory)
    {
        if (options.TlsCertFile is null || options.TlsKeyFile is null)
        {
            return null;
        }

        var certificate = new PemCertificateFiles(options.TlsCertFile, options.TlsKeyFile, loggerFactory.CreateLogger<PemCertificateFiles>());
        X509Certificate2Collection? clientAuthorities = null;
        if (options.TlsClientCaFile is { } caFile)
        {
            clientAuthorities = [];
            try
            {
                clientAuthorities.ImportFromPemFile(caFile);
            }
            catch (Exception e) when (e is CryptographicException or IOException or UnauthorizedAccessException)
            {
                throw new IOException($"cannot read the client CA bundle '{caFile}': {e.Message}", e);
            }

            if (clientAuthorities.Count == 0)
            {
                throw new IOException($"the client CA bundle '{caFile}' holds no PEM certificate");
            }
        }

        return new GrpcServerTls { ServerCertificate = () => certificate.Current, ClientCertificateAuthorities = clientAuthorities };
    }

    [LoggerMessage(EventId = 31, Level = LogLevel.Information, Message = "serving volumes of {Root} on {Endpoint} over {Transport} (authentication: {Authentication})")]
    private static partial void Serving(ILogger logger, string endpoint, string root, string authentication, string transport);

    [LoggerMessage(EventId = 35, Level = LogLevel.Information, Message = "serving the data path over NBD on {Endpoint}")]
    private static partial void NbdServing(ILogger logger, string endpoint);

    [LoggerMessage(EventId = 34, Level = LogLevel.Warning, Message = "{Endpoint} is reachable from other hosts without TLS: clients' tokens and volume data cross the network in cleartext (set --tls-cert-file and --tls-key-file)")]
    private static partial void TokenInCleartext(ILogger logger, string endpoint);

    [LoggerMessage(EventId = 32, Level = LogLevel.Warning, Message = "{Endpoint} is reachable from other hosts and no --token-file is set: anyone who can connect can read and overwrite every volume")]
    private static partial void Unauthenticated(ILogger logger, string endpoint);

    [LoggerMessage(EventId = 33, Level = LogLevel.Warning, Message = "token file {Path} is readable by group or others; restrict it (chmod 600)")]
    private static partial void TokenFileTooOpen(ILogger logger, string path);



}
