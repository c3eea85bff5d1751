using System.Text;
using Amazon;
using Amazon.Runtime;
using Amazon.S3;
using UblkCsi.Engine;

namespace UblkCsi.Stores.S3;

/// <summary>
/// The "s3" store type.
/// <para>StorageClass parameters: <c>bucket</c> (required), <c>prefix</c>, <c>endpoint</c> (URL of an
/// S3-compatible server; omit for AWS), <c>region</c> (default us-east-1), <c>pathStyle</c>
/// (true/false), <c>chunkSize</c> (64Ki..64Mi, default 4Mi), <c>cacheDir</c> (default
/// /var/cache/ublk-csi/s3), <c>cacheSize</c> (default 2Gi), <c>dirtyLimit</c> (default 256Mi),
/// <c>uploadConcurrency</c> (1..64, default 8), <c>readAhead</c> (chunks, 0..16, default 2).</para>
/// <para>Secrets: <c>accessKeyId</c> + <c>secretAccessKey</c> (+ optional <c>sessionToken</c>); without
/// them the AWS SDK's default chain applies (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, web identity,
/// instance profile).</para>
/// <para>Spec: <c>s3://BUCKET/[PREFIX/]VOLUME?endpoint=…&amp;region=…&amp;path-style=true</c>, the other
/// parameters in kebab-case (chunk-size, cache-dir, …); credentials only from the environment.</para>
/// </summary>
public sealed class S3StoreProvider : IStoreProvider
{
    public const string TypeName = "s3";
    public const string DefaultCacheDirectory = "/var/cache/ublk-csi/s3";

    public static readonly S3StoreProvider Instance = new();

    public string Type => TypeName;

    public IVolumeStore OpenStore(IReadOnlyDictionary<string, string> parameters, IReadOnlyDictionary<string, string> secrets)
    {
        var options = ParseOptions(parameters);
        var credentials = ParseCredentials(secrets);
        return Open(options, credentials);
    }

    public StoreSpec ValidateSpec(StoreSpec spec)
    {
        var (parameters, _) = SpecToParameters(spec);
        _ = ParseOptions(parameters);
        return spec;
    }

    public async Task<IBlockBackend> OpenSpecAsync(StoreSpec spec, StoreSpecOpenOptions options, CancellationToken cancellationToken)
    {
        var (parameters, volume) = SpecToParameters(spec);
        var store = Open(ParseOptions(parameters), credentials: null);
        try
        {
            VolumeInfo info;
            try
            {
                info = await store.GetVolumeAsync(volume, cancellationToken).ConfigureAwait(false);
            }
            catch (StoreNotFoundException) when (options.SizeBytes is { } size)
            {
                info = await store.CreateVolumeAsync(new CreateVolumeRequest(volume, size), cancellationToken).ConfigureAwait(false);
            }

            if (options.SizeBytes is { } wanted && StoreLimits.RoundUpSize(wanted) != info.SizeBytes)
            {
                throw new StoreParameterException("size", $"volume '{volume}' is {info.SizeBytes} bytes but {wanted} was requested; expand it or omit the size");
            }

            var backend = await store.OpenVolumeAsync(info.Id, options.ReadOnly ? VolumeAccess.ReadOnly : VolumeAccess.ReadWrite, cancellationToken).ConfigureAwait(false);
            return new OwningBackend(backend, store);
        }
        catch
        {
            await store.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Builds a store from parsed options; null credentials use the SDK's default chain.</summary>
    public static S3Store Open(S3StoreOptions options, AWSCredentials? credentials)
    {
        var config = new AmazonS3Config
        {
            ForcePathStyle = options.PathStyle,
            AuthenticationRegion = options.Region,
            // Checksums only where S3 requires them: S3-compatible servers reject or mangle the
            // trailing-checksum uploads the SDK sends by default.
            RequestChecksumCalculation = RequestChecksumCalculation.WHEN_REQUIRED,
            ResponseChecksumValidation = ResponseChecksumValidation.WHEN_REQUIRED,
            MaxConnectionsPerServer = Math.Max(16, options.UploadConcurrency * 2),
            Timeout = TimeSpan.FromMinutes(2),
        };
        if (options.Endpoint is not null)
        {
            config.ServiceURL = options.Endpoint;
        }
        else
        {
            config.RegionEndpoint = RegionEndpoint.GetBySystemName(options.Region);
        }

        var client = credentials is null ? new AmazonS3Client(config) : new AmazonS3Client(credentials, config);
        return new S3Store(options, new S3Bucket(client, options.Bucket, options.Prefix));
    }

    /// <summary>Validates a StorageClass parameter map into options.</summary>
    public static S3StoreOptions ParseOptions(IReadOnlyDictionary<string, string> parameters)
    {
        var p = new StoreParameters(parameters);
        var bucket = p.Required("bucket", "an S3 bucket name: 3 to 63 characters from [a-z0-9.-]");
        if (bucket.Length is < 3 or > 63 || !bucket.All(c => char.IsAsciiLetterLower(c) || char.IsAsciiDigit(c) || c is '.' or '-'))
        {
            throw p.Invalid("bucket", bucket, "allowed: 3 to 63 characters from [a-z0-9.-]");
        }

        var prefix = NormalisePrefix(p, p.Optional("prefix") ?? "");
        var endpoint = p.Optional("endpoint");
        if (endpoint is not null && (!Uri.TryCreate(endpoint, UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https") || !string.IsNullOrEmpty(uri.UserInfo)))
        {
            throw p.Invalid("endpoint", endpoint, "allowed: an http:// or https:// URL without credentials");
        }

        var region = p.Optional("region") ?? "us-east-1";
        if (!region.All(c => char.IsAsciiLetterOrDigit(c) || c == '-'))
        {
            throw p.Invalid("region", region, "allowed: a region name such as us-east-1");
        }

        var pathStyle = p.Boolean("pathStyle", false);
        var chunkSize = (int)p.Size("chunkSize", 4 << 20, 64 << 10, 64 << 20, multipleOf: 4096);
        var cacheDir = p.Optional("cacheDir") ?? DefaultCacheDirectory;
        if (!Path.IsPathFullyQualified(cacheDir) || cacheDir.Contains('\0', StringComparison.Ordinal))
        {
            throw p.Invalid("cacheDir", cacheDir, "allowed: an absolute directory path");
        }

        var cacheSize = p.Size("cacheSize", 2L << 30, 1 << 20, long.MaxValue);
        var dirtyLimit = p.Size("dirtyLimit", 256L << 20, 128 << 10, long.MaxValue);
        if (dirtyLimit < 2L * chunkSize)
        {
            throw p.Invalid("dirtyLimit", ByteSize.Format(dirtyLimit), $"allowed: at least two chunks ({ByteSize.Format(2L * chunkSize)})");
        }

        var concurrency = p.Integer("uploadConcurrency", 8, 1, 64);
        var readAhead = p.Integer("readAhead", 2, 0, 16);
        p.RejectUnknown();
        return new S3StoreOptions(bucket, prefix, endpoint, region, pathStyle, chunkSize, cacheDir, cacheSize, dirtyLimit, concurrency, readAhead);
    }

    private static AWSCredentials? ParseCredentials(IReadOnlyDictionary<string, string> secrets)
    {
        var s = new StoreParameters(secrets, "secrets", secret: true);
        var keyId = s.Optional("accessKeyId");
        var secret = s.Optional("secretAccessKey");
        var token = s.Optional("sessionToken");
        s.RejectUnknown();
        if ((keyId is null) != (secret is null))
        {
            throw new StoreParameterException(keyId is null ? "accessKeyId" : "secretAccessKey", "accessKeyId and secretAccessKey must be given together");
        }

        return keyId is null ? null
            : token is null ? new BasicAWSCredentials(keyId, secret)
            : new SessionAWSCredentials(keyId, secret, token);
    }

    private static string NormalisePrefix(StoreParameters p, string prefix)
    {
        var trimmed = prefix.Trim('/');
        if (trimmed.Length == 0)
        {
            return "";
        }

        foreach (var segment in trimmed.Split('/'))
        {
            if (!VolumeIds.IsValidId(segment))
            {
                throw p.Invalid("prefix", prefix, "allowed: '/'-separated segments of [A-Za-z0-9._-] starting with a letter or digit, no '..'");
            }
        }

        return trimmed + "/";
    }

    /// <summary>s3://bucket/a/b/volume?x-y=z -> {bucket, prefix=a/b, xY=z} and "volume".</summary>
    private static (Dictionary<string, string> Parameters, string Volume) SpecToParameters(StoreSpec spec)
    {
        var parts = spec.Location.Split('/', StringSplitOptions.RemoveEmptyEntries);
        if (parts.Length < 2)
        {
            throw new StoreParameterException("spec", $"'{spec}' must name a bucket and a volume: s3://BUCKET/[PREFIX/]VOLUME");
        }

        var volume = parts[^1];
        VolumeIds.Validate(volume, "volume");
        var parameters = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["bucket"] = parts[0],
            ["prefix"] = string.Join('/', parts[1..^1]),
        };
        foreach (var (key, value) in spec.Options)
        {
            var name = KebabToCamel(key);
            if (name is "bucket" or "prefix" or "accessKeyId" or "secretAccessKey" or "sessionToken")
            {
                throw new StoreParameterException(key, name.EndsWith("Id", StringComparison.Ordinal) || name.StartsWith("secret", StringComparison.Ordinal) || name.StartsWith("session", StringComparison.Ordinal)
                    ? "credentials never go in a spec; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
                    : "is part of the spec's path, not an option");
            }

            parameters[name] = value;
        }

        return (parameters, volume);
    }

    private static string KebabToCamel(string key)
    {
        var sb = new StringBuilder(key.Length);
        var upper = false;
        foreach (var c in key)
        {
            if (c == '-')
            {
                upper = true;
                continue;
            }

            sb.Append(upper ? char.ToUpperInvariant(c) : c);
            upper = false;
        }

        return sb.ToString();
    }
}
