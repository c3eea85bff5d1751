namespace UblkCsi.Stores.Internal;

/// <summary>
/// The stores' one retry-wait rule (the rpc store's call retries, the NBD data path's reconnects):
/// doubling from an initial wait, capped, with ±20 % jitter so that clients do not retry in lockstep.
/// </summary>
internal static class ExponentialBackoff
{
    /// <summary>The wait before attempt <paramref name="attempt"/> (1-based count of failures so far), without jitter.</summary>
    public static TimeSpan Nominal(TimeSpan initial, TimeSpan max, int attempt) =>
        TimeSpan.FromMilliseconds(Math.Min(initial.TotalMilliseconds * Math.Pow(2, Math.Min(attempt - 1, 30)), max.TotalMilliseconds));

    /// <summary><see cref="Nominal"/> with ±20 % jitter.</summary>
    public static TimeSpan Jittered(TimeSpan initial, TimeSpan max, int attempt) =>
        Nominal(initial, max, attempt) * (0.8 + (0.4 * Random.Shared.NextDouble()));
}
