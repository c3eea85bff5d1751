namespace UblkCsi.Stores.Internal;

/// <summary>
/// One async mutex per key (a volume or snapshot ID), so concurrent control calls for the same
/// object serialise while different objects proceed in parallel. Entries live while held.
/// </summary>
internal sealed class KeyedLock
{
    private readonly Dictionary<string, Entry> _entries = new(StringComparer.Ordinal);

    public async Task<IDisposable> AcquireAsync(string key, CancellationToken cancellationToken)
    {
        Entry entry;
        lock (_entries)
        {
            if (!_entries.TryGetValue(key, out entry!))
            {
                entry = new Entry(this, key);
                _entries.Add(key, entry);
            }

            entry.References++;
        }

        try
        {
            await entry.Semaphore.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            Release(entry, held: false);
            throw;
        }

        return entry;
    }

    private void Release(Entry entry, bool held)
    {
        if (held)
        {
            entry.Semaphore.Release();
        }

        lock (_entries)
        {
            if (--entry.References == 0)
            {
                _entries.Remove(entry.Key);
            }
        }
    }

    private sealed class Entry(KeyedLock owner, string key) : IDisposable
    {
        public readonly SemaphoreSlim Semaphore = new(1, 1);
        public readonly string Key = key;
        public int References;

        public void Dispose() => owner.Release(this, held: true);
    }
}
