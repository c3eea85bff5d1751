using UblkCsi.Stores.Internal;

namespace UblkCsi.Stores.Nbd;

/// <summary>
/// How long and how often a lost connection is retried before its I/O fails. The bound stays below
/// the kernel's 30 s block request timeout, so a server restart (milliseconds to seconds) is
/// invisible to the filesystem, while a server that is really gone shows up as EIO instead of a hang.
/// </summary>
/// <param name="GiveUpAfter">Time since the connection was lost after which waiting requests fail with EIO (new ones fail at once until a reconnect succeeds; reconnecting continues in the background).</param>
/// <param name="InitialBackoff">Wait before the second attempt; doubles per attempt.</param>
/// <param name="MaxBackoff">Upper bound of one wait.</param>
/// <param name="MaxAttemptsPerRequest">Connections one request may be sent on before it fails: a request that kills the server every time must not cycle forever.</param>
public sealed record NbdReconnectPolicy(TimeSpan GiveUpAfter, TimeSpan InitialBackoff, TimeSpan MaxBackoff, int MaxAttemptsPerRequest)
{
    /// <summary>20 s in total, 50 ms doubling to 1 s between attempts, 8 sends per request.</summary>
    public static NbdReconnectPolicy Default { get; } = new(TimeSpan.FromSeconds(20), TimeSpan.FromMilliseconds(50), TimeSpan.FromSeconds(1), 8);

    /// <summary>The wait before attempt <paramref name="attempt"/> (1-based count of failures so far), ±20 % jitter so clients do not reconnect in lockstep.</summary>
    public TimeSpan BackoffBefore(int attempt) => ExponentialBackoff.Jittered(InitialBackoff, MaxBackoff, attempt);
}
