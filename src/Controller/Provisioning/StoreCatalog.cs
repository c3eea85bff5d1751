using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;
using UblkCsi.Stores;

namespace UblkCsi.Controller.Provisioning;

/// <summary>
/// Opens stores and keeps them open: an s3 client or an rpc connection is worth reusing, and the
/// memory store only exists as one instance. A store is keyed by its type, full parameter set and a
/// hash of its secrets (secrets stay in memory only, never in keys that are logged). The catalog also
/// remembers every location it has served, which is what ListVolumes and ListSnapshots walk.
/// </summary>
public sealed class StoreCatalog : IAsyncDisposable
{
    private readonly Func<string, IReadOnlyDictionary<string, string>, IReadOnlyDictionary<string, string>, IVolumeStore> _open;
    private readonly ConcurrentDictionary<string, Lazy<IVolumeStore>> _stores = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, Known> _known = new(StringComparer.Ordinal);

    /// <param name="open">Opens a store from type, parameters and secrets (normally <see cref="StoreRegistry.Open"/>).</param>
    public StoreCatalog(Func<string, IReadOnlyDictionary<string, string>, IReadOnlyDictionary<string, string>, IVolumeStore>? open = null)
    {
        _open = open ?? StoreRegistry.Open;
    }

    /// <summary>Opens the store of a StorageClass parameter set (CreateVolume, GetCapacity).</summary>
    /// <exception cref="StoreException">Bad parameters or secrets (INVALID_ARGUMENT naming the key).</exception>
    public IVolumeStore Open(StoreLocator locator, IReadOnlyDictionary<string, string> storeParameters, IReadOnlyDictionary<string, string> secrets)
    {
        var store = GetOrOpen(locator.Type, storeParameters, secrets);
        _known[locator.ToString()] = new Known(locator, secrets);
        return store;
    }

    /// <summary>
    /// Opens the store an ID names, from its location alone. Without secrets in the call, the secrets
    /// last used with that location apply (ListVolumes and ControllerGetVolume carry none).
    /// </summary>
    public IVolumeStore OpenLocation(StoreLocator locator, IReadOnlyDictionary<string, string> secrets)
    {
        var key = locator.ToString();
        if (secrets.Count == 0 && _known.TryGetValue(key, out var known))
        {
            secrets = known.Secrets;
        }

        var store = GetOrOpen(locator.Type, locator.Location, secrets);
        _known[key] = new Known(locator, secrets);
        return store;
    }

    /// <summary>Every location served since start, ordered by locator.</summary>
    public IReadOnlyList<StoreLocator> KnownLocations() =>
        _known.OrderBy(k => k.Key, StringComparer.Ordinal).Select(k => k.Value.Locator).ToList();

    public async ValueTask DisposeAsync()
    {
        foreach (var store in _stores.Values.Where(s => s.IsValueCreated))
        {
            await store.Value.DisposeAsync().ConfigureAwait(false);
        }

        _stores.Clear();
    }

    private IVolumeStore GetOrOpen(string type, IReadOnlyDictionary<string, string> parameters, IReadOnlyDictionary<string, string> secrets)
    {
        var key = CacheKey(type, parameters, secrets);
        var lazy = _stores.GetOrAdd(key, _ => new Lazy<IVolumeStore>(() => _open(type, parameters, secrets)));
        try
        {
            return lazy.Value;
        }
        catch
        {
            // A failed open (bad parameter, unreachable endpoint) must not stick: the next call retries.
            _stores.TryRemove(new KeyValuePair<string, Lazy<IVolumeStore>>(key, lazy));
            throw;
        }
    }

    private static string CacheKey(string type, IReadOnlyDictionary<string, string> parameters, IReadOnlyDictionary<string, string> secrets)
    {
        var sb = new StringBuilder(type);
        foreach (var (k, v) in parameters.OrderBy(p => p.Key, StringComparer.Ordinal))
        {
            sb.Append('\n').Append(k).Append('=').Append(v);
        }

        var secretText = new StringBuilder();
        foreach (var (k, v) in secrets.OrderBy(p => p.Key, StringComparer.Ordinal))
        {
            secretText.Append(k).Append('=').Append(v).Append('\n');
        }

        sb.Append("\nsecrets:").Append(Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(secretText.ToString()))));
        return sb.ToString();
    }

    private sealed record Known(StoreLocator Locator, IReadOnlyDictionary<string, string> Secrets);
}
