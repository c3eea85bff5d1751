namespace UblkCsi.BlockStoreServer.Service;

/// <summary>
/// Orders a retried mutation after the attempt it replaces. When a client loses its connection
/// while a write is in flight, the server may still be executing that first attempt when the
/// retry arrives. If the retry finished first, was acknowledged, and the client then wrote new data
/// to the same range, the late first attempt would overwrite it. So a retry first waits until every
/// mutation that was already running on the volume has finished, then runs.
/// </summary>
/// <para>
/// It also fences stale writers: it holds the volume's writer generation (the lease the latest
/// read-write open took), and a mutation that carries an older generation is not entered. This is
/// the one place that check is made, for every channel of the data path.
/// </para>
/// <remarks>
/// A two-slot grace period (as in RCU): first attempts count themselves in the slot of the current
/// epoch, lock-free and without allocating. A retry flips the epoch, so later mutations count in the
/// other slot, and waits for the old slot to drain. Retries are rare, so their path may poll and
/// allocate. Retries are serialized, so a slot is never reused while someone waits for it.
/// </remarks>
internal sealed class MutationFence(ulong writerGeneration)
{
    private readonly int[] _active = new int[2];
    private readonly SemaphoreSlim _drain = new(1, 1);
    private int _epoch;
    private ulong _writerGeneration = writerGeneration;

    /// <summary>The generation of the writer that holds the lease; 0 when nobody opened the volume for writing.</summary>
    public ulong WriterGeneration => Volatile.Read(ref _writerGeneration);

    /// <summary>True when a writer of <paramref name="writerGeneration"/> may still change the volume.</summary>
    public bool Admits(ulong writerGeneration) => writerGeneration >= Volatile.Read(ref _writerGeneration);

    /// <summary>
    /// Enters a first-attempt mutation of the writer of <paramref name="writerGeneration"/>; false (not
    /// entered) when a later writer took the lease. The generation is read after the mutation counted
    /// itself, so <see cref="TakeOverAsync"/> either sees it running or it sees the new generation.
    /// </summary>
    public bool TryEnter(ulong writerGeneration, out int epoch)
    {
        epoch = Enter();
        if (Admits(writerGeneration))
        {
            return true;
        }

        Exit(epoch);
        return false;
    }

    /// <summary>
    /// Hands the lease to the writer of <paramref name="writerGeneration"/> and waits until every mutation
    /// admitted before it has finished, so no write of an earlier writer lands after the new writer's open
    /// returns. False when they are still running after <paramref name="timeout"/> (the lease is moved anyway).
    /// </summary>
    public async ValueTask<bool> TakeOverAsync(ulong writerGeneration, TimeSpan timeout, CancellationToken cancellationToken)
    {
        var current = Volatile.Read(ref _writerGeneration);
        while (current < writerGeneration)
        {
            // CompareExchange is a full fence: the new generation is visible before the slots are read.
            var seen = Interlocked.CompareExchange(ref _writerGeneration, writerGeneration, current);
            if (seen == current)
            {
                break;
            }

            current = seen;
        }

        var (entered, epoch) = await EnterAfterEarlierAsync(timeout, cancellationToken).ConfigureAwait(false);
        if (entered)
        {
            Exit(epoch);
        }

        return entered;
    }

    /// <summary>Enters a mutation without a writer check; pass the result to <see cref="Exit"/>.</summary>
    private int Enter()
    {
        while (true)
        {
            var epoch = Volatile.Read(ref _epoch);
            Interlocked.Increment(ref _active[epoch & 1]);

            // A retry may have flipped the epoch between the read and the increment; then this
            // mutation must count in the new slot, or the retry could miss it or wait for it.
            if (Volatile.Read(ref _epoch) == epoch)
            {
                return epoch;
            }

            Interlocked.Decrement(ref _active[epoch & 1]);
        }
    }

    /// <summary>Leaves a mutation entered with <see cref="Enter"/> or <see cref="EnterAfterEarlierAsync"/>.</summary>
    public void Exit(int epoch) => Interlocked.Decrement(ref _active[epoch & 1]);

    /// <summary>
    /// Waits until every mutation that entered before this call has exited, then enters. Returns
    /// false (without entering) when they are still running after <paramref name="timeout"/>.
    /// </summary>
    public async ValueTask<(bool Entered, int Epoch)> EnterAfterEarlierAsync(TimeSpan timeout, CancellationToken cancellationToken)
    {
        await _drain.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var old = _epoch;

            // Exchange is a full fence: the new epoch is visible before the old slot is read.
            Interlocked.Exchange(ref _epoch, old + 1);
            var until = Environment.TickCount64 + (long)timeout.TotalMilliseconds;
            while (Volatile.Read(ref _active[old & 1]) != 0)
            {
                if (Environment.TickCount64 >= until)
                {
                    return (false, 0);
                }

                await Task.Delay(1, cancellationToken).ConfigureAwait(false);
            }
        }
        finally
        {
            _drain.Release();
        }

        return (true, Enter());
    }

    /// <summary>Mutations in flight now (for tests and diagnostics).</summary>
    public int Active => Volatile.Read(ref _active[0]) + Volatile.Read(ref _active[1]);
}
