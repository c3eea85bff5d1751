namespace UblkCsi.NodePlugin.Volumes;

/// <summary>
/// One operation per volume at a time. A second call on a busy volume is not queued: the CSI spec
/// asks for ABORTED so the caller (kubelet) retries later, after the first call has settled.
/// </summary>
public sealed class VolumeLocks
{
    private static readonly TimeSpan WaitPoll = TimeSpan.FromMilliseconds(50);

    private readonly HashSet<string> _busy = new(StringComparer.Ordinal);
    private readonly Lock _gate = new();

    /// <summary>Takes the volume's lock, or returns null when an operation holds it.</summary>
    public IDisposable? TryAcquire(string volumeId)
    {
        lock (_gate)
        {
            return _busy.Add(volumeId) ? new Holder(this, volumeId) : null;
        }
    }

    /// <summary>
    /// Waits for the volume's lock (for the shutdown, which must not hand a device over while a call
    /// that outlived the gRPC server's grace period is still changing it).
    /// </summary>
    public async Task<IDisposable> AcquireAsync(string volumeId)
    {
        while (true)
        {
            if (TryAcquire(volumeId) is { } held)
            {
                return held;
            }

            await Task.Delay(WaitPoll).ConfigureAwait(false);
        }
    }

    private void Release(string volumeId)
    {
        lock (_gate)
        {
            _busy.Remove(volumeId);
        }
    }

    private sealed class Holder(VolumeLocks owner, string volumeId) : IDisposable
    {
        private int _released;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _released, 1) == 0)
            {
                owner.Release(volumeId);
            }
        }
    }
}
