namespace UblkCsi.GrpcHosting;

/// <summary>Settings of a <see cref="GrpcClient"/>.</summary>
public sealed class GrpcClientOptions
{
    /// <summary>Largest response message accepted, in bytes; larger ones fail with RESOURCE_EXHAUSTED. Default 4 MiB.</summary>
    public int MaxReceiveMessageBytes { get; init; } = Wire.GrpcProtocol.DefaultMaxReceiveMessageBytes;

    /// <summary>How long establishing a connection may take. Default 5 s.</summary>
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Metadata sent with every call, e.g. <c>authorization</c>. Keys are lower-case header names
    /// that gRPC does not reserve (not <c>grpc-*</c>, <c>te</c>, <c>content-type</c>, <c>user-agent</c>,
    /// no binary <c>-bin</c> suffix); values are printable ASCII. Values may be credentials: they are
    /// never logged nor quoted in errors.
    /// </summary>
    public IReadOnlyDictionary<string, string>? Metadata { get; init; }

    internal void Validate()
    {
        if (MaxReceiveMessageBytes < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxReceiveMessageBytes), MaxReceiveMessageBytes, "must be at least 1 byte");
        }

        if (ConnectTimeout <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(ConnectTimeout), ConnectTimeout, "must be positive");
        }

        foreach (var (key, value) in Metadata ?? new Dictionary<string, string>())
        {
            if (key.Length == 0 || key.Any(c => !(char.IsAsciiLetterLower(c) || char.IsAsciiDigit(c) || c is '-' or '_' or '.'))
                || key.StartsWith("grpc-", StringComparison.Ordinal) || key.EndsWith("-bin", StringComparison.Ordinal)
                || key is "te" or "content-type" or "user-agent" or "host")
            {
                throw new ArgumentException(
                    $"metadata key '{key}' is not allowed; use lower-case letters, digits, '-', '_' or '.', not a grpc- or -bin name, nor te, content-type, user-agent or host",
                    nameof(Metadata));
            }

            // The value is never quoted: it may be a credential.
            if (value is null || value.Any(c => c is < ' ' or > '~'))
            {
                throw new ArgumentException($"metadata '{key}' has a value that is not printable ASCII", nameof(Metadata));
            }
        }
    }
}
