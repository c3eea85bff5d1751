using UblkCsi.GrpcEndpoints;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using UblkCsi.Engine;

namespace UblkCsi.Stores.Rpc;

/// <summary>
/// The "rpc" store type: volumes on a block-store server such as ublk-blockstore-server.
/// <list type="bullet">
/// <item>StorageClass parameters: <c>endpoint</c> (required: <c>tcp://HOST:PORT</c> or
/// <c>unix:///PATH.sock</c>), <c>retryAttempts</c> (1-100, default 15: attempts per call while the
/// server is unreachable), <c>tls</c> (<c>true</c>/<c>false</c>, default false), <c>caFile</c> (PEM CA
/// bundle on the node; with tls), <c>insecure</c> (<c>true</c> allows a token in cleartext to a server
/// off this machine; default false).</item>
/// <item>Secrets: <c>token</c> (optional): the server's shared token; <c>caCert</c> (PEM CA bundle, instead
/// of caFile); <c>tlsCert</c> and <c>tlsKey</c> (PEM client certificate and key, for servers that require one).</item>
/// <item>Spec: <c>rpc://HOST:PORT/VOLUME[?token-file=PATH&amp;tls=true&amp;ca-file=PATH&amp;cert-file=PATH&amp;key-file=PATH&amp;insecure=true&amp;retry-attempts=N]</c>;
/// secrets are read from files (the token from the first line), so the spec, which is persisted, never holds them.</item>
/// </list>
/// </summary>
public sealed class RpcStoreProvider : IStoreProvider
{
    public const string TypeName = "rpc";

    public const string EndpointParameter = "endpoint";

    public const string RetryAttemptsParameter = "retryAttempts";

    public const string TlsParameter = "tls";

    public const string CaFileParameter = "caFile";

    public const string InsecureParameter = "insecure";

    public const string TokenSecret = "token";

    public const string CaCertSecret = "caCert";

    public const string TlsCertSecret = "tlsCert";

    public const string TlsKeySecret = "tlsKey";

    public const string TokenFileOption = "token-file";

    public const string TlsOption = "tls";

    public const string CaFileOption = "ca-file";

    public const string CertFileOption = "cert-file";

    public const string KeyFileOption = "key-file";

    public const string InsecureOption = "insecure";

    public const string RetryAttemptsOption = "retry-attempts";

    /// <summary>Longest token accepted; it travels in an HTTP/2 header.</summary>
    public const int MaxTokenLength = 4096;

    public static readonly RpcStoreProvider Instance = new();

    private readonly ILoggerFactory _loggerFactory;

    /// <param name="loggerFactory">Where opened stores log their warnings (e.g. a token sent in cleartext).</param>
    public RpcStoreProvider(ILoggerFactory? loggerFactory = null)
    {
        _loggerFactory = loggerFactory ?? NullLoggerFactory.Instance;
    }

    public string Type => TypeName;

    public IVolumeStore OpenStore(IReadOnlyDictionary<string, string> parameters, IReadOnlyDictionary<string, string> secrets)
    {
        var p = new StoreParameters(parameters);
        var endpointText = p.Required(EndpointParameter, "tcp://HOST:PORT or unix:///PATH.sock of a block-store server");
        if (!GrpcEndpoint.TryParse(endpointText, out var endpoint, out var error))
        {
            throw new StoreParameterException(EndpointParameter, error);
        }

        if (endpoint.Kind == GrpcEndpointKind.Tcp && endpoint.Port == 0)
        {
            throw new StoreParameterException(EndpointParameter, $"'{endpointText}' needs a port from 1 to 65535");
        }

        var attempts = RetryAttempts(p, RetryAttemptsParameter);
        var useTls = p.Boolean(TlsParameter, false);
        var caFile = p.Optional(CaFileParameter);
        var insecure = p.Boolean(InsecureParameter, false);
        p.RejectUnknown();

        var s = new StoreParameters(secrets, "secrets", secret: true);
        var token = s.Optional(TokenSecret);
        var caCert = s.Optional(CaCertSecret);
        var clientCert = s.Optional(TlsCertSecret);
        var clientKey = s.Optional(TlsKeySecret);
        s.RejectUnknown();
        if (token is not null)
        {
            CheckToken(token, TokenSecret);
        }

        var tls = RpcTlsMaterial.Build(
            useTls,
            new RpcTlsSource(TlsParameter, CaFileParameter, CaCertSecret, TlsCertSecret, TlsKeySecret),
            caFile is null ? null : RpcTlsMaterial.ReadFile(caFile, CaFileParameter),
            caFile is null ? CaCertSecret : CaFileParameter,
            caCert,
            clientCert,
            clientKey);
        return new RpcStore(new RpcStoreOptions(
            endpoint, token, RpcRetryPolicy.Default with { MaxAttempts = attempts }, Tls: tls, Insecure: insecure, Logger: _loggerFactory.CreateLogger<RpcStore>()));
    }

    public StoreSpec ValidateSpec(StoreSpec spec)
    {
        var (endpoint, volume) = ParseLocation(spec);
        var options = new StoreParameters(spec.Options, "rpc spec options");
        foreach (var pathOption in new[] { TokenFileOption, CaFileOption, CertFileOption, KeyFileOption })
        {
            if (options.Optional(pathOption) is { } path && (!Path.IsPathFullyQualified(path) || path.Contains('\0', StringComparison.Ordinal)))
            {
                throw new StoreParameterException(pathOption, "must be an absolute path");
            }
        }

        options.Boolean(TlsOption, false);
        options.Boolean(InsecureOption, false);
        RetryAttempts(options, RetryAttemptsOption);
        options.RejectUnknown();

        // Canonical form: the endpoint as GrpcEndpoint prints it (IPv6 in brackets).
        var authority = endpoint.ToString()["tcp://".Length..];
        return spec.With($"{authority}/{volume}");
    }

    public async Task<IBlockBackend> OpenSpecAsync(StoreSpec spec, StoreSpecOpenOptions options, CancellationToken cancellationToken)
    {
        var (endpoint, volumeId) = ParseLocation(spec);
        var token = spec.Options.TryGetValue(TokenFileOption, out var tokenFile) ? ReadTokenFile(tokenFile) : null;
        var specOptions = new StoreParameters(spec.Options, "rpc spec options");
        var tls = RpcTlsMaterial.Build(
            specOptions.Boolean(TlsOption, false),
            new RpcTlsSource(TlsOption, CaFileOption, CaFileOption, CertFileOption, KeyFileOption),
            specOptions.Optional(CaFileOption) is { } caFile ? RpcTlsMaterial.ReadFile(caFile, CaFileOption) : null,
            CaFileOption,
            null,
            specOptions.Optional(CertFileOption) is { } certFile ? RpcTlsMaterial.ReadFile(certFile, CertFileOption) : null,
            specOptions.Optional(KeyFileOption) is { } keyFile ? RpcTlsMaterial.ReadFile(keyFile, KeyFileOption) : null);
        var retry = RpcRetryPolicy.Default with { MaxAttempts = RetryAttempts(specOptions, RetryAttemptsOption) };
        var store = new RpcStore(new RpcStoreOptions(
            endpoint, token, retry, Tls: tls, Insecure: specOptions.Boolean(InsecureOption, false), Logger: _loggerFactory.CreateLogger<RpcStore>()));
        try
        {
            VolumeInfo volume;
            try
            {
                volume = await store.GetVolumeAsync(volumeId, cancellationToken).ConfigureAwait(false);
            }
            catch (StoreNotFoundException) when (options.SizeBytes is not null)
            {
                volume = await store.CreateVolumeAsync(new CreateVolumeRequest(volumeId, options.SizeBytes.Value), cancellationToken).ConfigureAwait(false);
            }
            catch (StoreNotFoundException)
            {
                throw new StoreParameterException("size", $"volume '{volumeId}' does not exist on {endpoint}; give a size to create it");
            }

            if (options.SizeBytes is { } wanted && StoreLimits.RoundUpSize(wanted) != volume.SizeBytes)
            {
                throw new StoreParameterException("size", $"volume '{volumeId}' is {volume.SizeBytes} bytes but {wanted} was requested; expand it or omit the size");
            }

            var access = options.ReadOnly ? VolumeAccess.ReadOnly : VolumeAccess.ReadWrite;
            var backend = await store.OpenVolumeAsync(volumeId, access, cancellationToken).ConfigureAwait(false);
            return new OwningBackend(backend, store);
        }
        catch
        {
            await store.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Attempts per call while the server is unreachable: 1 to 100, the default policy's when absent.</summary>
    private static int RetryAttempts(StoreParameters parameters, string name) =>
        parameters.Integer(name, RpcRetryPolicy.Default.MaxAttempts, 1, 100);

    private static (GrpcEndpoint Endpoint, string Volume) ParseLocation(StoreSpec spec)
    {
        const string Form = "must look like rpc://HOST:PORT/VOLUME with a port from 1 to 65535";
        var slash = spec.Location.IndexOf('/');
        if (slash <= 0)
        {
            throw new StoreParameterException("spec", $"'{spec}' {Form}");
        }

        if (!GrpcEndpoint.TryParse("tcp://" + spec.Location[..slash], out var endpoint, out _) || endpoint.Port == 0)
        {
            throw new StoreParameterException("spec", $"'{spec}' {Form}");
        }

        var volume = spec.Location[(slash + 1)..];
        VolumeIds.Validate(volume, "volume");
        return (endpoint, volume);
    }

    private static string ReadTokenFile(string path)
    {
        string text;
        try
        {
            using var reader = new StreamReader(path);
            text = reader.ReadLine() ?? "";
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new StoreParameterException(TokenFileOption, $"cannot read '{path}': {e.Message}");
        }

        CheckToken(text, TokenFileOption);
        return text;
    }

    /// <summary>Checks a token: it goes into a header, so printable ASCII without spaces, bounded. The value is never quoted.</summary>
    /// <exception cref="StoreParameterException">Names <paramref name="parameterName"/>.</exception>
    public static void CheckToken(string token, string parameterName)
    {
        if (token.Length is 0 or > MaxTokenLength || token.Any(c => c is <= ' ' or > '~'))
        {
            throw new StoreParameterException(parameterName, $"the token must be 1 to {MaxTokenLength} printable ASCII characters without spaces");
        }
    }
}
