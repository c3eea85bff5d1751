using System.Diagnostics;
using Xunit.Abstractions;

namespace UblkCsi.E2E;

/// <summary>Polling with a deadline; the timeout message carries the last state seen.</summary>
public static class Wait
{
    public static readonly TimeSpan Bind = TimeSpan.FromMinutes(5);
    public static readonly TimeSpan PodDone = TimeSpan.FromMinutes(6);
    public static readonly TimeSpan Snapshot = TimeSpan.FromMinutes(5);
    public static readonly TimeSpan Expansion = TimeSpan.FromMinutes(5);
    public static readonly TimeSpan Rollout = TimeSpan.FromMinutes(10);

    /// <summary>
    /// Polls <paramref name="probe"/> every 2 s until it returns (true, _) or <paramref name="timeout"/>
    /// passes; throws TimeoutException naming <paramref name="what"/> and the last state it returned.
    /// </summary>
    public static async Task UntilAsync(string what, TimeSpan timeout, Func<Task<(bool Done, string State)>> probe,
        ITestOutputHelper? log = null)
    {
        var clock = Stopwatch.StartNew();
        var last = "(not probed)";
        while (true)
        {
            try
            {
                var (done, state) = await probe();
                if (state != last) log?.WriteLine($"[{clock.Elapsed:mm\\:ss}] {what}: {state}");
                last = state;
                if (done) return;
            }
            catch (Exception e) when (e is not TestFailure)
            {
                last = $"{e.GetType().Name}: {e.Message}";
            }
            if (clock.Elapsed > timeout)
                throw new TimeoutException($"{what}: not reached in {timeout.TotalSeconds:0} s; last state: {last}");
            await Task.Delay(TimeSpan.FromSeconds(2));
        }
    }
}

/// <summary>A condition that makes waiting pointless (a pod failed): thrown through Wait.UntilAsync.</summary>
public sealed class TestFailure(string message) : Exception(message);
