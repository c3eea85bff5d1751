using System.Globalization;
using Microsoft.Extensions.Logging;

namespace UblkCsi.GrpcHosting.Hosting;

/// <summary>How log lines are written to the console.</summary>
public enum LogFormat
{
    /// <summary>One human-readable line per entry.</summary>
    Text,

    /// <summary>One JSON object per line, for log collectors.</summary>
    Json,
}

/// <summary>The options every gRPC host shares: endpoint, logging and message size.</summary>
public sealed record CommonHostOptions(GrpcEndpoint Endpoint, LogLevel LogLevel, LogFormat LogFormat, int MaxMessageBytes)
{
    /// <summary>The declarations of the shared options, including --help and --version.</summary>
    public static IReadOnlyList<HostOption> Declarations { get; } =
    [
        new("--endpoint", "CSI_ENDPOINT", "gRPC listen address: unix:///path.sock or tcp://host:port (default unix:///csi/csi.sock)"),
        new("--log-level", "LOG_LEVEL", "trace, debug, information, warning, error or critical (default information)"),
        new("--log-format", "LOG_FORMAT", "text or json (default text)"),
        new("--max-message-bytes", "MAX_MESSAGE_BYTES", "largest accepted request message in bytes (default 4194304)"),
        new("--help", null, "print this help and exit", IsFlag: true),
        new("--version", null, "print the version and exit", IsFlag: true),
    ];

    /// <summary>Reads the shared options; throws <see cref="HostOptionException"/> naming the first invalid one.</summary>
    public static CommonHostOptions From(HostCommandLine line) => new(
        line.Parse("--endpoint", "unix:///csi/csi.sock", GrpcEndpoint.Parse),
        line.Parse("--log-level", "information", ParseLogLevel),
        line.Parse("--log-format", "text", ParseLogFormat),
        line.Parse("--max-message-bytes", "4194304", ParseMessageBytes));

    /// <summary>Parses a --log-level value; the error lists the allowed levels.</summary>
    public static LogLevel ParseLogLevel(string value) => value.ToLowerInvariant() switch
    {
        "trace" => LogLevel.Trace,
        "debug" => LogLevel.Debug,
        "information" or "info" => LogLevel.Information,
        "warning" or "warn" => LogLevel.Warning,
        "error" => LogLevel.Error,
        "critical" => LogLevel.Critical,
        _ => throw new FormatException($"'{value}' is not a log level; allowed: trace, debug, information, warning, error, critical"),
    };

    /// <summary>Parses a --log-format value (text or json).</summary>
    public static LogFormat ParseLogFormat(string value) => value.ToLowerInvariant() switch
    {
        "text" => LogFormat.Text,
        "json" => LogFormat.Json,
        _ => throw new FormatException($"'{value}' is not a log format; allowed: text, json"),
    };

    private static int ParseMessageBytes(string value)
    {
        const int Min = 1024;
        const int Max = 256 * 1024 * 1024;
        if (!int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var bytes) || bytes < Min || bytes > Max)
        {
            throw new FormatException($"'{value}' is not a byte count between {Min} and {Max}");
        }

        return bytes;
    }
}
