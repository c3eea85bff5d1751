using System.Globalization;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using UblkCsi.Engine;
using UblkCsi.GrpcEndpoints;
using UblkCsi.Stores.Rpc;

namespace UblkCsi.Stores.Nbd;

/// <summary>
/// The "nbd" store type: exports of an NBD server as volumes.
/// <list type="bullet">
/// <item>Parameters (StorageClass or PersistentVolume volumeAttributes): <c>endpoint</c> (required:
/// <c>tcp://HOST:PORT</c> or <c>unix:///PATH</c>), <c>export</c> (the export name; absent: the volume
/// ID names it), <c>tls</c> (<c>off</c> | <c>on</c>: NBD_OPT_STARTTLS, never a fallback to cleartext),
/// <c>caFile</c> (PEM CA bundle on the node; with tls), <c>connections</c> (1-16; default one per
/// engine queue, up to 8; 1 unless the export advertises multi-conn).</item>
/// <item>Secrets (with tls): <c>caCert</c> (PEM CA bundle, instead of caFile), <c>tlsCert</c> and
/// <c>tlsKey</c> (PEM client certificate and key, for servers that verify clients).</item>
/// <item>Specs: <c>nbd://HOST[:PORT]/EXPORT</c> (port 10809 by default) and
/// <c>nbd+unix:///EXPORT?socket=/PATH</c>, the forms of the NBD URI standard; options
/// <c>connections=N</c>, <c>tls=on</c>, <c>ca-file</c>, <c>cert-file</c>, <c>key-file</c> (paths of PEM files).</item>
/// </list>
/// </summary>
public sealed class NbdStoreProvider : IStoreProvider
{
    public const string TypeName = "nbd";

    /// <summary>Spec scheme of exports on a unix socket; not a separate store type for StorageClasses.</summary>
    public const string UnixTypeName = "nbd+unix";

    public const string EndpointParameter = "endpoint";
    public const string ExportParameter = "export";
    public const string TlsParameter = "tls";
    public const string ConnectionsParameter = "connections";
    public const string CaFileParameter = RpcStoreProvider.CaFileParameter;
    public const string CaCertSecret = RpcStoreProvider.CaCertSecret;
    public const string TlsCertSecret = RpcStoreProvider.TlsCertSecret;
    public const string TlsKeySecret = RpcStoreProvider.TlsKeySecret;
    public const string CaFileOption = RpcStoreProvider.CaFileOption;
    public const string CertFileOption = RpcStoreProvider.CertFileOption;
    public const string KeyFileOption = RpcStoreProvider.KeyFileOption;
    public const string SocketOption = "socket";

    /// <summary>IANA port of NBD.</summary>
    public const int DefaultPort = 10809;

    public const int MaxConnections = 16;

    public static readonly NbdStoreProvider Instance = new(TypeName);

    /// <summary>Parses <c>nbd+unix://</c> specs; StoreSpec takes a spec's scheme as its type, hence a second entry.</summary>
    public static readonly NbdStoreProvider Unix = new(UnixTypeName);

    private NbdStoreProvider(string type) => Type = type;

    private static ILoggerFactory s_loggerFactory = NullLoggerFactory.Instance;

    /// <summary>
    /// Where nbd clients log (connection lost, restored, given up): the host's factory while a host
    /// runs (<see cref="UseLoggerFactory"/>), else nowhere. Static because providers are created
    /// without a logger factory (the registry's instances).
    /// </summary>
    public static ILoggerFactory LoggerFactory => Volatile.Read(ref s_loggerFactory);

    /// <summary>
    /// Makes <paramref name="factory"/> the one nbd stores log to, until the returned handle is
    /// disposed (hosts own it and dispose it last). Disposing puts back the null factory unless
    /// another host set its own meanwhile, so stores opened later never log to a disposed factory.
    /// </summary>
    public static IAsyncDisposable UseLoggerFactory(ILoggerFactory factory)
    {
        ArgumentNullException.ThrowIfNull(factory);
        Volatile.Write(ref s_loggerFactory, factory);
        return new LoggerFactoryLease(factory);
    }

    public string Type { get; }

    public IVolumeStore OpenStore(IReadOnlyDictionary<string, string> parameters, IReadOnlyDictionary<string, string> secrets)
    {
        if (Type == UnixTypeName)
        {
            throw new StoreParameterException("type", $"'{UnixTypeName}' is a spec scheme; StorageClasses use store: {TypeName} with endpoint unix:///PATH");
        }

        var p = new StoreParameters(parameters);
        var endpoint = ParseEndpoint(p.Required(EndpointParameter, "tcp://HOST:PORT or unix:///PATH of an NBD server"));
        var exportName = p.Optional(ExportParameter);
        if (exportName is not null)
        {
            CheckExportName(exportName, ExportParameter);
        }

        var tlsOn = p.Choice(TlsParameter, "off", "off", "on") == "on";
        var caFile = p.Optional(CaFileParameter);
        var connections = p.Optional(ConnectionsParameter) is null ? (int?)null : p.Integer(ConnectionsParameter, 1, 1, MaxConnections);
        p.RejectUnknown();
        var s = new StoreParameters(secrets, "secrets", secret: true);
        var caCert = s.Optional(CaCertSecret);
        var clientCert = s.Optional(TlsCertSecret);
        var clientKey = s.Optional(TlsKeySecret);
        s.RejectUnknown();
        var tls = RpcTlsMaterial.Build(
            tlsOn,
            new RpcTlsSource(TlsParameter, CaFileParameter, CaCertSecret, TlsCertSecret, TlsKeySecret, "on"),
            caFile is null ? null : RpcTlsMaterial.ReadFile(caFile, CaFileParameter),
            CaFileParameter,
            caCert,
            clientCert,
            clientKey);
        return new NbdStore(new NbdStoreOptions(endpoint, exportName, connections, tls), LoggerFactory.CreateLogger<NbdStore>());
    }

    public StoreSpec ValidateSpec(StoreSpec spec)
    {
        var (endpoint, exportName, connections, _) = ParseSpec(spec);
        var options = new Dictionary<string, string>(StringComparer.Ordinal);
        if (connections is { } n)
        {
            options[ConnectionsParameter] = n.ToString(CultureInfo.InvariantCulture);
        }

        foreach (var name in (ReadOnlySpan<string>)[TlsParameter, CaFileOption, CertFileOption, KeyFileOption])
        {
            if (spec.Options.TryGetValue(name, out var value))
            {
                options[name] = value;
            }
        }

        if (endpoint.Kind == GrpcEndpointKind.Unix)
        {
            options[SocketOption] = endpoint.UnixPath!;
            return spec.With("/" + Uri.EscapeDataString(exportName), options);
        }

        // Canonical: the port always written, the export percent-escaped (parsing unescapes it).
        var authority = endpoint.ToString()["tcp://".Length..];
        return spec.With($"{authority}/{Uri.EscapeDataString(exportName)}", options);
    }

    public async Task<IBlockBackend> OpenSpecAsync(StoreSpec spec, StoreSpecOpenOptions options, CancellationToken cancellationToken)
    {
        var (endpoint, exportName, connections, tls) = ParseSpec(spec);
        var client = await NbdClient.ConnectAsync(
            new NbdClientOptions(endpoint, exportName, connections, options.ReadOnly) { Tls = tls },
            LoggerFactory.CreateLogger<NbdClient>(), cancellationToken).ConfigureAwait(false);
        if (options.SizeBytes is { } wanted && wanted != client.Export.UsableSizeBytes)
        {
            await client.DisposeAsync().ConfigureAwait(false);
            throw new StoreParameterException("size",
                $"export '{exportName}' on {endpoint} is {client.Export.UsableSizeBytes} bytes but {wanted} was requested; omit the size (NBD exports are sized by the server)");
        }

        return new NbdVolume(exportName.Length == 0 ? "default" : exportName, client, options.ReadOnly);
    }

    /// <summary>Checks an export name: the protocol's string rules (UTF-8, no NUL, at most 4096 bytes), and no control characters.</summary>
    public static string CheckExportName(string name, string parameterName)
    {
        if (System.Text.Encoding.UTF8.GetByteCount(name) > NbdProtocol.MaxStringBytes || name.Any(char.IsControl))
        {
            throw new StoreParameterException(parameterName, $"an NBD export name is at most {NbdProtocol.MaxStringBytes} bytes of UTF-8 without control characters");
        }

        return name;
    }

    private static GrpcEndpoint ParseEndpoint(string text)
    {
        if (!GrpcEndpoint.TryParse(text, out var endpoint, out var error))
        {
            throw new StoreParameterException(EndpointParameter, error.Replace(".sock", "", StringComparison.Ordinal));
        }

        if (endpoint.Kind == GrpcEndpointKind.Tcp && endpoint.Port == 0)
        {
            throw new StoreParameterException(EndpointParameter, $"'{text}' needs a port from 1 to 65535 (NBD's is {DefaultPort})");
        }

        return endpoint;
    }

    private (GrpcEndpoint Endpoint, string Export, int? Connections, RpcTls? Tls) ParseSpec(StoreSpec spec)
    {
        var options = new StoreParameters(spec.Options, $"{Type} spec options");
        var socket = Type == UnixTypeName ? options.Required(SocketOption, "the absolute path of the server's unix socket") : null;
        var connections = options.Optional(ConnectionsParameter) is null ? (int?)null : options.Integer(ConnectionsParameter, 1, 1, MaxConnections);
        // Spec options name files, never PEM text: the spec is persisted, the key must not be.
        var tls = RpcTlsMaterial.Build(
            options.Choice(TlsParameter, "off", "off", "on") == "on",
            new RpcTlsSource(TlsParameter, CaFileOption, CaFileOption, CertFileOption, KeyFileOption, "on"),
            options.Optional(CaFileOption) is { } caFile ? RpcTlsMaterial.ReadFile(caFile, CaFileOption) : null,
            CaFileOption,
            null,
            options.Optional(CertFileOption) is { } certFile ? RpcTlsMaterial.ReadFile(certFile, CertFileOption) : null,
            options.Optional(KeyFileOption) is { } keyFile ? RpcTlsMaterial.ReadFile(keyFile, KeyFileOption) : null);
        options.RejectUnknown();

        var slash = spec.Location.IndexOf('/');
        if (Type == UnixTypeName)
        {
            if (slash != 0)
            {
                throw new StoreParameterException("spec", $"'{spec}' must look like nbd+unix:///EXPORT?socket=/PATH");
            }

            return (ParseEndpoint("unix://" + socket), CheckExportName(Uri.UnescapeDataString(spec.Location[1..]), "spec"), connections, tls);
        }

        const string Form = "must look like nbd://HOST[:PORT]/EXPORT (an empty EXPORT is the server's default export)";
        var authority = slash < 0 ? spec.Location : spec.Location[..slash];
        if (authority.Length == 0)
        {
            throw new StoreParameterException("spec", $"'{spec}' {Form}; exports on a unix socket are nbd+unix:///EXPORT?socket=/PATH");
        }

        var hasPort = authority.StartsWith('[') ? authority.Contains("]:", StringComparison.Ordinal) : authority.Contains(':', StringComparison.Ordinal);
        if (!GrpcEndpoint.TryParse("tcp://" + authority + (hasPort ? "" : $":{DefaultPort}"), out var endpoint, out _) || endpoint.Port == 0)
        {
            throw new StoreParameterException("spec", $"'{spec}' {Form}");
        }

        var exportName = slash < 0 ? "" : Uri.UnescapeDataString(spec.Location[(slash + 1)..]);
        return (endpoint, CheckExportName(exportName, "spec"), connections, tls);
    }

    private sealed class LoggerFactoryLease(ILoggerFactory factory) : IAsyncDisposable
    {
        public ValueTask DisposeAsync()
        {
            Interlocked.CompareExchange(ref s_loggerFactory, NullLoggerFactory.Instance, factory);
            return default;
        }
    }
}
