using UblkCsi.GrpcEndpoints;
using Microsoft.Extensions.Logging;
using UblkCsi.GrpcHosting;
using UblkCsi.Hosting;
using UblkCsi.Stores.Files;

namespace UblkCsi.BlockStoreServer;

/// <summary>The server's options, from flags or environment variables.</summary>
/// <param name="Listen">Where to serve.</param>
/// <param name="Root">The file-store root directory (absolute, existing).</param>
/// <param name="TokenFile">File holding the shared token clients must send, or null for none.</param>
/// <param name="Reflink">How snapshots and clones copy images.</param>
/// <param name="DirectIo">How volumes reach their images: through the server's page cache (Off, the default) or O_DIRECT.</param>
/// <param name="LogLevel">Minimum log level.</param>
/// <param name="LogFormat">Text or JSON log lines.</param>
/// <param name="ShutdownTimeout">How long a graceful stop waits for in-flight calls.</param>
/// <param name="TlsCertFile">PEM certificate chain to serve TLS with, or null for cleartext.</param>
/// <param name="TlsKeyFile">PEM private key of <paramref name="TlsCertFile"/>.</param>
/// <param name="TlsClientCaFile">PEM CA bundle client certificates must chain to, or null to ask for none.</param>
/// <param name="NbdListen">Where to serve the data path (NBD); null: next to <paramref name="Listen"/> (<see cref="DataEndpoint"/>).</param>
public sealed record BlockStoreServerOptions(
    GrpcEndpoint Listen,
    string Root,
    string? TokenFile,
    ReflinkMode Reflink,
    DirectIoMode DirectIo,
    LogLevel LogLevel,
    LogFormat LogFormat,
    TimeSpan ShutdownTimeout,
    string? TlsCertFile = null,
    string? TlsKeyFile = null,
    string? TlsClientCaFile = null,
    GrpcEndpoint? NbdListen = null)
{
    /// <summary>Declarations for parsing and --help.</summary>
    public static IReadOnlyList<HostOption> Declarations { get; } =
    [
        new("--listen", "BLOCKSTORE_LISTEN", "where to serve: tcp://HOST:PORT (e.g. tcp://0.0.0.0:9400) or unix:///PATH.sock (required)"),
        new("--root", "BLOCKSTORE_ROOT", "absolute path of the directory holding the volumes (required; a file-store root)"),
        new("--token-file", "BLOCKSTORE_TOKEN_FILE", "file whose first line is the shared token clients must send (default: no authentication)"),
        new("--reflink", "BLOCKSTORE_REFLINK", "snapshot/clone copies: auto, always or never (default auto)"),
        new("--direct-io", "BLOCKSTORE_DIRECT_IO", "volume images through the page cache (off, the default, like nbdkit file) or with O_DIRECT: auto (where the filesystem allows it) or on"),
        new("--tls-cert-file", "BLOCKSTORE_TLS_CERT_FILE", "PEM certificate (chain) to serve TLS with; re-read when it changes (default: cleartext)"),
        new("--tls-key-file", "BLOCKSTORE_TLS_KEY_FILE", "PEM private key of --tls-cert-file (required with it)"),
        new("--tls-client-ca-file", "BLOCKSTORE_TLS_CLIENT_CA_FILE", "PEM CA bundle: clients must present a certificate it signed (needs --tls-cert-file)"),
        new("--nbd-listen", "BLOCKSTORE_NBD_LISTEN", "where to serve the data path (NBD, with the same TLS): tcp://HOST:PORT or unix:///PATH.sock (default: --listen's host at its port + 1, or its socket path + \".nbd\")"),
        new("--shutdown-timeout", "BLOCKSTORE_SHUTDOWN_TIMEOUT", "seconds a graceful stop waits for in-flight calls, 0-3600 (default 30)"),
        new("--log-level", "LOG_LEVEL", "trace, debug, information, warning, error or critical (default information)"),
        new("--log-format", "LOG_FORMAT", "text or json (default text)"),
    ];

    /// <summary>Reads and validates the options; throws <see cref="HostOptionException"/> naming the first bad one.</summary>
    public static BlockStoreServerOptions From(HostCommandLine line)
    {
        var options = new BlockStoreServerOptions(
            line.Parse("--listen", line.Require("--listen"), GrpcEndpoint.Parse),
            line.Parse("--root", line.Require("--root"), ParseRoot),
            OptionalPath(line, "--token-file"),
            line.Parse("--reflink", "auto", ParseReflink),
            line.Parse("--direct-io", "off", ParseDirectIo),
            line.Parse("--log-level", "information", LogOptions.ParseLogLevel),
            line.Parse("--log-format", "text", LogOptions.ParseLogFormat),
            line.Parse("--shutdown-timeout", "30", ParseSeconds),
            OptionalPath(line, "--tls-cert-file"),
            OptionalPath(line, "--tls-key-file"),
            OptionalPath(line, "--tls-client-ca-file"),
            line.Get("--nbd-listen") is { } nbd ? line.Parse("--nbd-listen", nbd, GrpcEndpoint.Parse) : null);
        if ((options.TlsCertFile is null) != (options.TlsKeyFile is null))
        {
            var missing = options.TlsCertFile is null ? "--tls-cert-file" : "--tls-key-file";
            throw new HostOptionException(missing, "--tls-cert-file and --tls-key-file go together");
        }

        if (options.TlsClientCaFile is not null && options.TlsCertFile is null)
        {
            throw new HostOptionException("--tls-client-ca-file", "client certificates need TLS: give --tls-cert-file and --tls-key-file too");
        }

        try
        {
            _ = options.DataEndpoint;
        }
        catch (FormatException e)
        {
            throw new HostOptionException("--nbd-listen", $"the default next to --listen is not usable ({e.Message}); set --nbd-listen");
        }

        return options;
    }

    /// <summary>Where the data path is served: <see cref="NbdListen"/>, else next to <see cref="Listen"/>.</summary>
    public GrpcEndpoint DataEndpoint => NbdListen ?? (Listen.Kind == GrpcEndpointKind.Unix
        ? GrpcEndpoint.Unix(Listen.UnixPath + ".nbd")
        : GrpcEndpoint.Tcp(Listen.Host!, Listen.Port == 0 ? 0 : Listen.Port + 1));

    private static string? OptionalPath(HostCommandLine line, string name) =>
        line.Get(name) is { } value ? line.Parse(name, value, ParseAbsolutePath) : null;

    private static string ParseRoot(string value)
    {
        var path = ParseAbsolutePath(value);
        return Directory.Exists(path) ? path : throw new FormatException($"directory '{path}' does not exist");
    }

    private static string ParseAbsolutePath(string value) =>
        Path.IsPathFullyQualified(value) && !value.Contains('\0', StringComparison.Ordinal)
            ? Path.GetFullPath(value)
            : throw new FormatException($"'{value}' is not an absolute path");

    private static ReflinkMode ParseReflink(string value) => value.ToLowerInvariant() switch
    {
        "auto" => ReflinkMode.Auto,
        "always" => ReflinkMode.Always,
        "never" => ReflinkMode.Never,
        _ => throw new FormatException($"'{value}' is not a reflink mode; allowed: auto, always, never"),
    };

    private static DirectIoMode ParseDirectIo(string value) => value.ToLowerInvariant() switch
    {
        "off" => DirectIoMode.Off,
        "auto" => DirectIoMode.Auto,
        "on" => DirectIoMode.On,
        _ => throw new FormatException($"'{value}' is not a direct-io mode; allowed: off, auto, on"),
    };

    private static TimeSpan ParseSeconds(string value) =>
        int.TryParse(value, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var seconds) && seconds <= 3600
            ? TimeSpan.FromSeconds(seconds)
            : throw new FormatException($"'{value}' is not a number of seconds from 0 to 3600");
}
