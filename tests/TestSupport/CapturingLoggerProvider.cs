using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace UblkCsi.TestSupport;

/// <summary>Keeps every log entry at every level, with its structured values and exception text.</summary>
public sealed class CapturingLoggerProvider : ILoggerProvider
{
    private readonly ConcurrentQueue<LogEntry> _entries = new();

    public IReadOnlyCollection<LogEntry> Entries => _entries;

    /// <summary>Everything any log line exposed, as one string to search.</summary>
    public string AllText => string.Join("\n", _entries.Select(e => e.FullText));

    public ILogger CreateLogger(string categoryName) => new CapturingLogger(categoryName, _entries);

    public void Dispose()
    {
    }

    public static ILoggerFactory CreateFactory(out CapturingLoggerProvider provider)
    {
        var capture = new CapturingLoggerProvider();
        provider = capture;
        return LoggerFactory.Create(b => b.SetMinimumLevel(LogLevel.Trace).AddProvider(capture));
    }

    private sealed class CapturingLogger(string category, ConcurrentQueue<LogEntry> entries) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            var values = state is IEnumerable<KeyValuePair<string, object?>> pairs
                ? string.Join("; ", pairs.Select(p => $"{p.Key}={p.Value}"))
                : string.Empty;
            entries.Enqueue(new LogEntry(category, logLevel, eventId, formatter(state, exception), values, exception?.ToString()));
        }
    }
}

public sealed record LogEntry(string Category, LogLevel Level, EventId EventId, string Message, string Values, string? Exception)
{
    public string FullText => $"{Category} {Level} {Message} | {Values} | {Exception}";
}
