using Grpc.Core;
using UblkCsi.Stores.Internal;

namespace UblkCsi.Stores.Rpc;

/// <summary>
/// How the rpc store retries calls that failed because the server could not be reached
/// (UNAVAILABLE: connection refused or dropped, server shutting down). Only idempotent calls are
/// retried, which is every call of the protocol: data-path mutations are idempotent by offset and
/// control-path calls by name or id. Other statuses are answers and are never retried.
/// </summary>
/// <param name="MaxAttempts">Attempts in total, the first included (1 = no retry).</param>
/// <param name="InitialBackoff">Wait before the first retry; doubles per retry.</param>
/// <param name="MaxBackoff">Upper bound of one wait.</param>
public sealed record RpcRetryPolicy(int MaxAttempts, TimeSpan InitialBackoff, TimeSpan MaxBackoff)
{
    /// <summary>
    /// 15 attempts, 50 ms doubling to at most 2 s: about 19 s of waiting, as long as the nbd store
    /// reconnects (20 s). Enough for a server process to restart even on a loaded node (a .NET server
    /// that starts in well under a second natively took 10-24 s in the 2-vCPU test VM under load),
    /// short enough that the kernel's request timeout (30 s by default) is not reached.
    /// </summary>
    public static RpcRetryPolicy Default { get; } = new(15, TimeSpan.FromMilliseconds(50), TimeSpan.FromSeconds(2));

    /// <summary>The wait before retry number <paramref name="retry"/> (1-based), with ±20 % jitter so clients do not retry in lockstep.</summary>
    public TimeSpan BackoffBefore(int retry) =>
        ExponentialBackoff.Jittered(InitialBackoff, MaxBackoff, retry);

    /// <summary>
    /// The same budget for the data path's reconnects: a lost data connection is retried for as long as
    /// the retries of a call would wait in total, with the same backoff, and a request is sent at most
    /// <see cref="MaxAttempts"/> times.
    /// </summary>
    internal Nbd.NbdReconnectPolicy ToReconnectPolicy()
    {
        var total = TimeSpan.Zero;
        for (var retry = 1; retry < MaxAttempts; retry++)
        {
            total += ExponentialBackoff.Nominal(InitialBackoff, MaxBackoff, retry);
        }

        return new Nbd.NbdReconnectPolicy(total, InitialBackoff, MaxBackoff, MaxAttempts);
    }

    /// <summary>Checks the values; errors name the store parameter they came from.</summary>
    internal RpcRetryPolicy Validate()
    {
        if (MaxAttempts is < 1 or > 100)
        {
            throw new StoreParameterException(RpcStoreProvider.RetryAttemptsParameter, $"must be from 1 to 100, got {MaxAttempts}");
        }

        if (InitialBackoff < TimeSpan.Zero || MaxBackoff < InitialBackoff)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxBackoff), "backoffs must be non-negative with MaxBackoff >= InitialBackoff");
        }

        return this;
    }

    /// <summary>
    /// True for failures a retry can cure: the call did not reach a server able to answer. That includes
    /// CANCELLED, which Grpc.Net.Client reports when a connection was not established within the connect
    /// timeout (seen on a starved VM); callers check their own cancellation before retrying.
    /// </summary>
    internal static bool IsRetryable(RpcException e) => e.StatusCode is StatusCode.Unavailable or StatusCode.Cancelled;
}
