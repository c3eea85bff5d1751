using Microsoft.Extensions.Logging;
using UblkCsi.Engine.Interop;
using UblkCsi.Engine.Logging;
using UblkCsi.Linux;

namespace UblkCsi.Engine.Threading;

/// <summary>
/// What a thread that serves block I/O must do before it serves: declare itself an I/O flusher so
/// memory reclaim never waits on it (prctl(2): a process in the block I/O path "must" set
/// PR_SET_IO_FLUSHER, or writeback of dirty pages of the very device it serves can deadlock on it),
/// and, for a queue thread, run on the CPUs the kernel maps to its queue. Both are best effort: they
/// need CAP_SYS_RESOURCE resp. an allowed CPU, and a missing one is logged once per process, never fatal.
/// </summary>
public static class IoThreads
{
    private static int s_flusherFailureLogged;
    private static int s_affinityFailureLogged;

    /// <summary>
    /// Sets PR_SET_IO_FLUSHER on the calling thread (allocations on it then behave as GFP_NOIO and it
    /// is exempt from dirty-page throttling). Returns false, logging the first failure in the
    /// process, when the kernel refuses (EPERM without CAP_SYS_RESOURCE; EINVAL before Linux 5.6).
    /// </summary>
    public static bool MarkIoFlusher(ILogger? logger = null)
    {
        var result = Libc.Syscall(Libc.SYS_prctl, Libc.PR_SET_IO_FLUSHER, 1, 0, 0, 0, 0);
        if (result == 0)
        {
            return true;
        }

        var errno = Libc.LastErrno;
        if (logger != null && Interlocked.Exchange(ref s_flusherFailureLogged, 1) == 0)
        {
            EngineLog.IoFlusherRefused(logger, Thread.CurrentThread.Name ?? "unnamed", errno, Errno.Describe(errno));
        }

        return false;
    }

    /// <summary>
    /// Whether the calling thread is an I/O flusher, read from the task flags in /proc/thread-self/stat
    /// (PR_GET_IO_FLUSHER would need CAP_SYS_RESOURCE just to ask).
    /// </summary>
    public static bool IsIoFlusher() => IsIoFlusher(File.ReadAllText("/proc/thread-self/stat"));

    /// <summary>Whether the task whose /proc/.../stat line is <paramref name="statLine"/> is an I/O flusher.</summary>
    public static bool IsIoFlusher(string statLine)
    {
        // PR_SET_IO_FLUSHER sets PF_MEMALLOC_NOIO | PF_LOCAL_THROTTLE. The command name may hold spaces
        // and parentheses, so fields are counted after the last ')': state ppid pgrp session tty tpgid flags.
        const uint IoFlusherFlags = 0x00080000 | 0x00100000;
        var fields = statLine[(statLine.LastIndexOf(')') + 2)..].Split(' ');
        var flags = uint.Parse(fields[6], System.Globalization.CultureInfo.InvariantCulture);
        return (flags & IoFlusherFlags) == IoFlusherFlags;
    }

    /// <summary>True when the calling thread holds CAP_SYS_RESOURCE, which PR_SET_IO_FLUSHER needs.</summary>
    public static bool HasCapSysResource()
    {
        const int CapSysResource = 24;
        var line = File.ReadLines("/proc/thread-self/status").First(l => l.StartsWith("CapEff:", StringComparison.Ordinal));
        var effective = ulong.Parse(line.AsSpan("CapEff:".Length).Trim(), System.Globalization.NumberStyles.HexNumber, null);
        return (effective & (1UL << CapSysResource)) != 0;
    }

    /// <summary>The CPUs the calling thread may run on (sched_getaffinity).</summary>
    public static unsafe CpuSet CurrentAffinity()
    {
        var mask = stackalloc byte[CpuSet.ByteLength];
        var result = Libc.Syscall(Libc.SYS_sched_getaffinity, 0, CpuSet.ByteLength, (long)mask, 0, 0, 0);
        if (result < 0)
        {
            var errno = Libc.LastErrno;
            throw new UblkException($"sched_getaffinity failed: {Errno.Describe(errno)}", errno);
        }

        // The raw syscall fills only the kernel's cpumask size and returns it; the rest stays as set.
        new Span<byte>(mask + result, CpuSet.ByteLength - (int)result).Clear();
        return CpuSet.FromBytes(new ReadOnlySpan<byte>(mask, CpuSet.ByteLength));
    }

    /// <summary>
    /// Restricts the calling thread to the CPUs of <paramref name="cpus"/> it is allowed to use
    /// (a cgroup cpuset may exclude some). Returns false, logging the first failure in the process,
    /// when none is left or the kernel refuses.
    /// </summary>
    public static unsafe bool PinTo(CpuSet cpus, ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(cpus);
        var usable = cpus.Intersect(CurrentAffinity());
        var errno = Errno.EINVAL;
        if (!usable.IsEmpty)
        {
            var mask = stackalloc byte[CpuSet.ByteLength];
            usable.CopyTo(new Span<byte>(mask, CpuSet.ByteLength));
            if (Libc.Syscall(Libc.SYS_sched_setaffinity, 0, CpuSet.ByteLength, (long)mask, 0, 0, 0) == 0)
            {
                return true;
            }

            errno = Libc.LastErrno;
        }

        if (logger != null && Interlocked.Exchange(ref s_affinityFailureLogged, 1) == 0)
        {
            EngineLog.AffinityRefused(logger, Thread.CurrentThread.Name ?? "unnamed", cpus.ToString(), errno, Errno.Describe(errno));
        }

        return false;
    }

    /// <summary>Lets a test see the once-per-process log again.</summary>
    internal static void ResetFailureLogForTests()
    {
        Volatile.Write(ref s_flusherFailureLogged, 0);
        Volatile.Write(ref s_affinityFailureLogged, 0);
    }

    /// <summary>
    /// Everything a ublk queue thread does first: PR_SET_IO_FLUSHER, then the queue's CPUs
    /// (<paramref name="queueCpus"/>, from GET_QUEUE_AFFINITY; null leaves the affinity alone).
    /// </summary>
    public static void PrepareQueueThread(CpuSet? queueCpus, ILogger? logger)
    {
        MarkIoFlusher(logger);
        if (queueCpus != null)
        {
            PinTo(queueCpus, logger);
        }
    }
}
