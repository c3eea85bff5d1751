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
/// <param name="LogLevel">Minimum log level.</param>
/// <param name="LogFormat">Text or JSON log lines.</param>
/// <param name="ShutdownTimeout">How long a graceful stop waits for in-flight calls.</param>
public sealed record BlockStoreServerOptions(
    GrpcEndpoint Listen,
    string Root,
    string? TokenFile,
    ReflinkMode Reflink,
    LogLevel LogLevel,
    LogFormat LogFormat,
    TimeSpan ShutdownTimeout)
{
    /// <summary>Declarations for parsing and --help.</summary>
    public static IReadOnlyList<HostOption> Declarations { get; } =
    [
        new("--listen", "BLOCKSTORE_LISTEN", "where to serve: tcp://HOST:PORT (e.g. tcp://0.0.0.0:9400) or unix:///PATH.sock (required)"),
        new("--root", "BLOCKSTORE_ROOT", "absolute path of the directory holding the volumes (required; a file-store root)"),
        new("--token-file", "BLOCKSTORE_TOKEN_FILE", "file whose first line is the shared token clients must send (default: no authentication)"),
        new("--reflink", "BLOCKSTORE_REFLINK", "snapshot/clone copies: auto, always or never (default auto)"),
        new("--shutdown-timeout", "BLOCKSTORE_SHUTDOWN_TIMEOUT", "seconds a graceful stop waits for in-flight calls, 0-3600 (default 30)"),
        new("--log-level", "LOG_LEVEL", "trace, debug, information, warning, error or critical (default information)"),
        new("--log-format", "LOG_FORMAT", "text or json (default text)"),
    ];

    /// <summary>Reads and validates the options; throws <see cref="HostOptionException"/> naming the first bad one.</summary>
    public static BlockStoreServerOptions From(HostCommandLine line) => new(
        line.Parse("--listen", line.Require("--listen"), GrpcEndpoint.Parse),
        line.Parse("--root", line.Require("--root"), ParseRoot),
        line.Get("--token-file") is { } tokenFile ? line.Parse("--token-file", tokenFile, ParseAbsolutePath) : null,
        line.Parse("--reflink", "auto", ParseReflink),
        line.Parse("--log-level", "information", LogOptions.ParseLogLevel),
        line.Parse("--log-format", "text", LogOptions.ParseLogFormat),
        line.Parse("--shutdown-timeout", "30", ParseSeconds));

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

    private static TimeSpan ParseSeconds(string value) =>
        int.TryParse(value, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var seconds) && seconds <= 3600
            ? TimeSpan.FromSeconds(seconds)
            : throw new FormatException($"'{value}' is not a number of seconds from 0 to 3600");
}
