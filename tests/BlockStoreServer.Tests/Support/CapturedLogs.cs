using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace UblkCsi.BlockStoreServer.Tests.Support;

/// <summary>Keeps every log line at every level (message, structured values, exception text).</summary>
public sealed class CapturedLogs : ILoggerProvider
{
    private readonly ConcurrentQueue<string> _lines = new();

    /// <summary>Everything logged so far, one entry per line.</summary>
    public string Text => string.Join("\n", _lines);

    public ILogger CreateLogger(string categoryName) => new Logger(categoryName, _lines);

    /// <summary>Adds this provider at Trace level to a logging builder.</summary>
    public void AddTo(ILoggingBuilder builder) => builder.SetMinimumLevel(LogLevel.Trace).AddProvider(this);

    public void Dispose()
    {
    }

    private sealed class Logger(string category, ConcurrentQueue<string> lines) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            var values = state is IEnumerable<KeyValuePair<string, object?>> pairs ? string.Join("; ", pairs.Select(p => $"{p.Key}={p.Value}")) : "";
            lines.Enqueue($"{logLevel} {category}[{eventId.Id}] {formatter(state, exception)} | {values} | {exception}");
        }
    }
}
