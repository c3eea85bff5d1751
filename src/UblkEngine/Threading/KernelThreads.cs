using System.Diagnostics;
using UblkCsi.Linux;

namespace UblkCsi.Engine.Threading;

/// <summary>
/// Threads as the kernel sees them. A .NET thread is finished for .NET before its kernel task has
/// exited; code that depends on the task's exit (task work the kernel may still run on it) waits
/// for its directory in /proc/self/task to go, which happens only after the kernel's exit path ran.
/// </summary>
internal static class KernelThreads
{
    private static readonly TimeSpan PollInterval = TimeSpan.FromMilliseconds(1);

    /// <summary>The calling thread's task id.</summary>
    public static int CurrentId() => Libc.GetTid();

    /// <summary>Whether task <paramref name="threadId"/> of this process still exists.</summary>
    public static bool Exists(int threadId) => Directory.Exists($"/proc/self/task/{threadId}");

    /// <summary>
    /// Completes with true once task <paramref name="threadId"/> has exited, or with false after
    /// <paramref name="limit"/> (the caller decides what a lingering thread means).
    /// </summary>
    public static async Task<bool> WaitForExitAsync(int threadId, TimeSpan limit)
    {
        var started = Stopwatch.GetTimestamp();
        while (Exists(threadId))
        {
            if (Stopwatch.GetElapsedTime(started) >= limit)
            {
                return false;
            }

            await Task.Delay(PollInterval).ConfigureAwait(false);
        }

        return true;
    }
}
