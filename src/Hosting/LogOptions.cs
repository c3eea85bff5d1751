using Microsoft.Extensions.Logging;

namespace UblkCsi.Hosting;

/// <summary>How log lines are written to the console.</summary>
public enum LogFormat
{
    /// <summary>One human-readable line per entry.</summary>
    Text,

    /// <summary>One JSON object per line, for log collectors.</summary>
    Json,
}

/// <summary>The logging options every host shares.</summary>
/// <param name="Level">Minimum level written.</param>
/// <param name="Format">Text or JSON lines.</param>
public sealed record LogOptions(LogLevel Level, LogFormat Format)
{
    /// <summary>The declarations of the logging options.</summary>
    public static IReadOnlyList<HostOption> Declarations { get; } =
    [
        new("--log-level", "LOG_LEVEL", "trace, debug, information, warning, error or critical (default information)"),
        new("--log-format", "LOG_FORMAT", "text or json (default text)"),
    ];

    /// <summary>Reads the logging options; throws <see cref="HostOptionException"/> naming the first invalid one.</summary>
    public static LogOptions From(HostCommandLine line) => new(
        line.Parse("--log-level", "information", ParseLogLevel),
        line.Parse("--log-format", "text", ParseLogFormat));

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
}
