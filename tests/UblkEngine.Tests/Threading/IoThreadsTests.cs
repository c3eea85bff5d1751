using Microsoft.Extensions.Logging;
using UblkCsi.Engine.Interop;
using UblkCsi.Engine.Logging;
using UblkCsi.Engine.Threading;
using UblkCsi.Linux;

namespace UblkCsi.UblkEngine.Tests.Threading;

/// <summary>The I/O-thread preparation every queue thread runs first, checked on a queue-like thread of this host.</summary>
public sealed class IoThreadsTests
{
    private const int CapSysResource = 24;

    [Fact]
    public void QueueThreadPreparationMakesTheThreadAnIoFlusherPinnedToItsQueueCpusOrSaysWhyNot()
    {
        var logger = new ListLogger();
        IoThreads.ResetFailureLogForTests();
        bool before = true, after = false, capable = false;
        CpuSet? affinity = null;
        RunOnDedicatedThread(() =>
        {
            capable = IoThreads.HasCapSysResource();
            before = IoThreads.IsIoFlusher();
            IoThreads.PrepareQueueThread(CpuSet.Of(0), logger);
            after = IoThreads.IsIoFlusher();
            affinity = IoThreads.CurrentAffinity();
        });

        Assert.False(before, "a fresh thread is not an I/O flusher");
        Assert.Equal("0", affinity!.ToString());
        if (capable)
        {
            Assert.True(after, "task flags after PrepareQueueThread lack PF_MEMALLOC_NOIO|PF_LOCAL_THROTTLE");
            Assert.DoesNotContain(logger.Events, e => e.Id == LogEventIds.IoFlusherRefused);
        }
        else
        {
            // Without CAP_SYS_RESOURCE (this host's container drops it): refused, logged, and the thread still serves.
            Assert.False(after);
            Assert.Single(logger.Events, e => e.Id == LogEventIds.IoFlusherRefused);
        }
    }

    [Fact]
    public void PreparationLeavesOtherThreadsAlone()
    {
        RunOnDedicatedThread(() => IoThreads.PrepareQueueThread(CpuSet.Of(0), logger: null));
        bool other = true;
        int cpus = 0;
        RunOnDedicatedThread(() =>
        {
            other = IoThreads.IsIoFlusher();
            cpus = IoThreads.CurrentAffinity().Count;
        });
        Assert.False(other);
        Assert.Equal(Environment.ProcessorCount, cpus);
    }

    [Fact]
    public void IoFlusherIsReadFromTheTaskFlags()
    {
        // /proc/<pid>/stat of a kworker-like task with PF_MEMALLOC_NOIO|PF_LOCAL_THROTTLE (0x180000) set, a name with ") ".
        Assert.True(IoThreads.IsIoFlusher("77 (odd) name) S 2 0 0 0 -1 1581120 0 0"));
        Assert.False(IoThreads.IsIoFlusher("77 (plain) S 2 0 0 0 -1 4194368 0 0"));
    }

    [Fact]
    public void AQueueWhoseCpusAreAllForbiddenRunsUnpinnedAndSaysSoOnce()
    {
        var logger = new ListLogger();
        var allowed = IoThreads.CurrentAffinity();
        var forbidden = new CpuSet();
        for (var cpu = 0; cpu < CpuSet.MaxCpus; cpu++)
        {
            if (!allowed.Contains(cpu))
            {
                forbidden.Add(cpu);
            }
        }

        IoThreads.ResetFailureLogForTests();
        bool pinned = true, again = true;
        RunOnDedicatedThread(() =>
        {
            pinned = IoThreads.PinTo(forbidden, logger);
            again = IoThreads.PinTo(forbidden, logger);
        });

        Assert.False(pinned);
        Assert.False(again);
        Assert.Single(logger.Events, e => e.Id == LogEventIds.AffinityRefused);
    }

    [Fact]
    public void WithoutCapSysResourceIoFlusherIsLoggedOnceAndNotFatal()
    {

        var logger = new ListLogger();
        IoThreads.ResetFailureLogForTests();
        bool first = true, second = true;
        RunOnDedicatedThread(() =>
        {
            // Capabilities are per thread: dropping one here leaves the test process untouched.
            if (IoThreads.HasCapSysResource())
            {
                DropEffectiveCapability(CapSysResource);
            }

            first = IoThreads.MarkIoFlusher(logger);
            IoThreads.PrepareQueueThread(null, logger); // must not throw
            second = IoThreads.MarkIoFlusher(logger);
        });

        Assert.False(first);
        Assert.False(second);
        var logged = Assert.Single(logger.Events, e => e.Id == LogEventIds.IoFlusherRefused);
        Assert.Contains("EPERM", logged.Message);
    }

    [Fact]
    public void CpuSetRoundTripsTheKernelLayout()
    {
        var set = CpuSet.Of(0, 1, 2, 3, 8, 64, 1023);
        var bytes = new byte[CpuSet.ByteLength];
        set.CopyTo(bytes);
        Assert.Equal(0x0F, bytes[0]);
        Assert.Equal(0x01, bytes[1]);
        Assert.Equal(0x01, bytes[8]);
        Assert.Equal("0-3,8,64,1023", CpuSet.FromBytes(bytes).ToString());
        Assert.Equal(7, set.Count);
    }

    internal static void RunOnDedicatedThread(Action action)
    {
        Exception? failure = null;
        var thread = new Thread(() =>
        {
            try
            {
                action();
            }
            catch (Exception e)
            {
                failure = e;
            }
        });
        thread.Start();
        thread.Join();
        if (failure != null)
        {
            throw new Xunit.Sdk.XunitException($"on the dedicated thread: {failure}");
        }
    }

    private static unsafe void DropEffectiveCapability(int capability)
    {
        const long SysCapget = 125, SysCapset = 126;
        const uint Version3 = 0x20080522;
        var header = stackalloc uint[2];
        var data = stackalloc uint[6]; // two { effective, permitted, inheritable } for 64 capabilities
        header[0] = Version3;
        header[1] = 0;
        Assert.Equal(0, Libc.Syscall(SysCapget, (long)header, (long)data, 0, 0, 0, 0));
        data[0] &= ~(1u << capability);
        Assert.Equal(0, Libc.Syscall(SysCapset, (long)header, (long)data, 0, 0, 0, 0));
    }

    private sealed class ListLogger : ILogger
    {
        public List<(int Id, string Message)> Events { get; } = [];

        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            lock (Events)
            {
                Events.Add((eventId.Id, formatter(state, exception)));
            }
        }
    }
}
