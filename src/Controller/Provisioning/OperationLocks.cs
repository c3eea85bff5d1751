using System.Collections.Concurrent;

namespace UblkCsi.Controller.Provisioning;

/// <summary>
/// One in-flight operation per volume or snapshot. The CSI sidecars retry with backoff and may send a
/// call again while the first is still running; the spec wants ABORTED for the duplicate rather than
/// a second, racing execution.
/// </summary>
public sealed class OperationLocks
{
    private readonly ConcurrentDictionary<string, byte> _held = new(StringComparer.Ordinal);

    /// <summary>Takes the key or throws ABORTED when an operation on it is running.</summary>
    public IDisposable Acquire(string key)
    {
        if (!_held.TryAdd(key, 0))
        {
            throw CsiErrors.Aborted($"an operation on '{key}' is already in progress");
        }

        return new Holder(this, key);
    }

    private sealed class Holder(OperationLocks owner, string key) : IDisposable
    {
        private int _released;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _released, 1) == 0)
            {
                owner._held.TryRemove(key, out _);
            }
        }
    }
}
