using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Console;

namespace UblkCsi.Hosting;

/// <summary>Console logging for the hosts: single-line text or JSON, UTC timestamps.</summary>
public static class HostLogging
{
    /// <summary>Creates the process's logger factory; dispose it last so buffered lines are flushed.</summary>
    /// <param name="level">Minimum level written.</param>
    /// <param name="format">Text or JSON lines.</param>
    /// <param name="configure">Extra configuration (tests add capturing providers here).</param>
    public static ILoggerFactory Create(LogLevel level, LogFormat format, Action<ILoggingBuilder>? configure = null) =>
        LoggerFactory.Create(builder =>
        {
            builder.SetMinimumLevel(level);

            // Kestrel's own chatter is only useful when debugging the transport itself.
            builder.AddFilter("Microsoft.AspNetCore", level <= LogLevel.Debug ? level : LogLevel.Warning);
            builder.AddFilter("Microsoft.Extensions.Hosting", level <= LogLevel.Debug ? level : LogLevel.Warning);
            if (format == LogFormat.Json)
            {
                builder.AddJsonConsole(o =>
                {
                    o.UseUtcTimestamp = true;
                    o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ";
                });
            }
            else
            {
                builder.AddSimpleConsole(o =>
                {
                    o.SingleLine = true;
                    o.UseUtcTimestamp = true;
                    o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ ";
                    o.ColorBehavior = LoggerColorBehavior.Disabled;
                });
            }

            configure?.Invoke(builder);
        });
}
