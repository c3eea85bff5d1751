using UblkCsi.Engine;
using UblkCsi.Engine.Device;
using UblkCsi.Engine.IoUring;

namespace UblkCsi.Tests.Shared;

/// <summary>
/// The test thread as an engine queue thread, without a ublk kernel: a ring and a <see cref="QueueIo"/>
/// bound to this thread, and the queue loop's steps (submit, route the ring's completions, end the
/// batch, stop on exit). Compiled into each test project that drives QueueIo (it is internal to the
/// engine), from this one file.
/// </summary>
internal sealed class TestQueueThread : IDisposable
{
    private bool _stopped;

    public TestQueueThread(int operations = 8, UserCopyChannel? userCopy = null)
    {
        Ring = Ring.Create(8, IoUringSetupFlags.None, cqEntries: 64);
        Io = new QueueIo(Ring, operations) { UserCopy = userCopy };
        Io.BindToCurrentThread();
    }

    public Ring Ring { get; }

    public QueueIo Io { get; }

    /// <summary>
    /// Submits and waits on the ring, routing its completions, until <paramref name="pending"/> is done;
    /// for operations that complete through this ring.
    /// </summary>
    public void Reap(ValueTask pending)
    {
        while (!pending.IsCompleted)
        {
            Ring.SubmitAndWait(1);
            Drain();
        }

        pending.GetAwaiter().GetResult();
    }

    /// <summary>Routes the completions already on the ring; returns how many.</summary>
    public int Drain()
    {
        var count = 0;
        while (Ring.TryGetCompletion(out var cqe))
        {
            // (No xunit assertion here: it would allocate inside loops that tests measure.)
            if ((cqe.UserData & QueueIo.OperationMark) == 0)
            {
                throw new InvalidOperationException($"unexpected CQE {cqe.UserData}");
            }

            Io.OnCompletion(cqe.UserData, cqe.Result);
            count++;
        }

        return count;
    }

    /// <summary>
    /// Turns the loop without blocking (submit, route, end the batch, a 1 ms nap) until
    /// <paramref name="pending"/> is done, for calls answered through the ring or from other threads.
    /// </summary>
    public void Wait(ValueTask pending)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (!pending.IsCompleted)
        {
            if (DateTime.UtcNow >= deadline)
            {
                throw new TimeoutException("no answer within 30 s");
            }

            Turn();
        }

        pending.GetAwaiter().GetResult();
    }

    /// <summary>Ends the batch, then <see cref="Wait"/>s: what the queue loop does after a dispatch.</summary>
    public void EndBatchAndWait(ValueTask pending)
    {
        Io.EndBatch();
        Wait(pending);
    }

    /// <summary>Turns the loop for <paramref name="time"/>.</summary>
    public void RunFor(TimeSpan time)
    {
        var until = DateTime.UtcNow + time;
        while (DateTime.UtcNow < until)
        {
            Turn();
        }
    }

    /// <summary>What the queue thread does on exit: unbind, then stop (waits end early, posts run).</summary>
    public void Stop()
    {
        QueueIo.UnbindCurrentThread();
        Io.Stop();
        _stopped = true;
    }

    public void Dispose()
    {
        if (!_stopped)
        {
            Stop();
        }

        Ring.Dispose();
    }

    private void Turn()
    {
        Ring.Submit();
        Drain();
        Io.EndBatch();
        Thread.Sleep(1);
    }
}
