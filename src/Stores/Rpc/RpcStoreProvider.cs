using UblkCsi.GrpcEndpoints;
using UblkCsi.Engine;

namespace UblkCsi.Stores.Rpc;

/// <summary>
/// The "rpc" store type: volumes on a block-store server such as ublk-blockstore-server.
/// <list type="bullet">
/// <item>StorageClass parameters: <c>endpoint</c> (required: <c>tcp://HOST:PORT</c> or
/// <c>unix:///PATH.sock</c>), <c>retryAttempts</c> (1-100, default 10: attempts per call while the
/// server is unreachable).</item>
/// <item>Secrets: <c>token</c> (optional): the server's shared token.</item>
/// <item>Spec: <c>rpc://HOST:PORT/VOLUME[?token-file=/ABSOLUTE/PATH]</c>; the token is read from the
/// file (first line), so the spec, which is persisted, never holds it.</item>
/// </list>
/// </summary>
public sealed class RpcStoreProvider : IStoreProvider
{
    public const string TypeName = "rpc";

    public const string EndpointParameter = "endpoint";

    public const string RetryAttemptsParameter = "retryAttempts";

    public const string TokenSecret = "token";

    public const string TokenFileOption = "token-file";

    /// <summary>Longest token accepted; it travels in an HTTP/2 header.</summary>
    public const int MaxTokenLength = 4096;

    public static readonly RpcStoreProvider Instance = new();

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

        var attempts = p.Integer(RetryAttemptsParameter, RpcRetryPolicy.Default.MaxAttempts, 1, 100);
        p.RejectUnknown();

        var s = new StoreParameters(secrets, "secrets", secret: true);
        var token = s.Optional(TokenSecret);
        s.RejectUnknown();
        if (token is not null)
        {
            CheckToken(token, TokenSecret);
        }

        return new RpcStore(new RpcStoreOptions(endpoint, token, RpcRetryPolicy.Default with { MaxAttempts = attempts }));
    }

    public StoreSpec ValidateSpec(StoreSpec spec)
    {
        var (endpoint, volume) = ParseLocation(spec);
        var options = new StoreParameters(spec.Options, "rpc spec options");
        var tokenFile = options.Optional(TokenFileOption);
        options.RejectUnknown();
        if (tokenFile is not null && (!Path.IsPathFullyQualified(tokenFile) || tokenFile.Contains('\0', StringComparison.Ordinal)))
        {
            throw new StoreParameterException(TokenFileOption, "must be an absolute path to a file holding the token");
        }

        // Canonical form: the endpoint as GrpcEndpoint prints it (IPv6 in brackets).
        var authority = endpoint.ToString()["tcp://".Length..];
        return spec.With($"{authority}/{volume}");
    }

    public async Task<IBlockBackend> OpenSpecAsync(StoreSpec spec, StoreSpecOpenOptions options, CancellationToken cancellationToken)
    {
        var (endpoint, volumeId) = ParseLocation(spec);
        var token = spec.Options.TryGetValue(TokenFileOption, out var tokenFile) ? ReadTokenFile(tokenFile) : null;
        var store = new RpcStore(new RpcStoreOptions(endpoint, token));
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
