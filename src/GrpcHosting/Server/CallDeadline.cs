using System.Diagnostics;

namespace UblkCsi.GrpcHosting.Server;

/// <summary>
/// The cancellation scope of one call: the client's abort token, plus the grpc-timeout deadline
/// when the client sent one. Calls without a deadline allocate nothing here.
/// </summary>
internal readonly struct CallDeadline : IDisposable
{
    private readonly CancellationTokenSource? _source;
    private readonly long _expiresAt;
    private readonly CancellationToken _aborted;

    private CallDeadline(CancellationTokenSource? source, CancellationToken aborted, DateTime deadline, long expiresAt)
    {
        _source = source;
        _aborted = aborted;
        var token = source?.Token ?? aborted;
        Token = token;
        Deadline = deadline;
        _expiresAt = expiresAt;
    }

    public CancellationToken Token { get; }

    /// <summary>UTC deadline, or <see cref="DateTime.MaxValue"/> without one.</summary>
    public DateTime Deadline { get; }

    /// <summary>True once the deadline (not a client abort) has passed.</summary>
    public bool Expired => _source is not null
        && (Stopwatch.GetTimestamp() >= _expiresAt || (_source.IsCancellationRequested && !_aborted.IsCancellationRequested));

    public static CallDeadline Start(TimeSpan timeout, CancellationToken aborted)
    {
        // CancelAfter accepts at most ~49 days; a longer deadline is effectively none.
        if (timeout == Timeout.InfiniteTimeSpan || timeout.TotalMilliseconds > uint.MaxValue - 1)
        {
            return new CallDeadline(null, aborted, DateTime.MaxValue, long.MaxValue);
        }

        var source = CancellationTokenSource.CreateLinkedTokenSource(aborted);
        source.CancelAfter(timeout);
        var expiresAt = Stopwatch.GetTimestamp() + (long)(timeout.TotalSeconds * Stopwatch.Frequency);
        return new CallDeadline(source, aborted, DateTime.UtcNow + timeout, expiresAt);
    }

    public void Dispose() => _source?.Dispose();
}
