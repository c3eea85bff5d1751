using UblkCsi.Engine;
using UblkCsi.Engine.Backends;

namespace UblkCsi.Stores.InMemory;

/// <summary>
/// The "memory" store type. StorageClass parameters: <c>capacity</c> (optional size bound on the sum
/// of volume and snapshot sizes, e.g. "10Gi"). No secrets.
/// </summary>
public sealed class MemoryStoreProvider : IStoreProvider
{
    public const string TypeName = "memory";

    public static readonly MemoryStoreProvider Instance = new();

    public string Type => TypeName;

    public IVolumeStore OpenStore(IReadOnlyDictionary<string, string> parameters, IReadOnlyDictionary<string, string> secrets) =>
        InMemoryProviders.Open(TypeName, static size => new MemoryBackend(size), retainsData: true, parameters, secrets);

    public StoreSpec ValidateSpec(StoreSpec spec) => spec;

    public Task<IBlockBackend> OpenSpecAsync(StoreSpec spec, StoreSpecOpenOptions options, CancellationToken cancellationToken) =>
        InMemoryProviders.OpenSpecAsync((MemoryStore)OpenStore(new Dictionary<string, string>(), new Dictionary<string, string>()), options, cancellationToken);
}

/// <summary>The "null" store type: volumes read zeros and drop writes (benchmarks). Parameter <c>capacity</c> as for memory.</summary>
public sealed class NullStoreProvider : IStoreProvider
{
    public const string TypeName = "null";

    public static readonly NullStoreProvider Instance = new();

    public string Type => TypeName;

    public IVolumeStore OpenStore(IReadOnlyDictionary<string, string> parameters, IReadOnlyDictionary<string, string> secrets) =>
        InMemoryProviders.Open(TypeName, static size => new NullBackend(size), retainsData: false, parameters, secrets);

    public StoreSpec ValidateSpec(StoreSpec spec) => spec;

    public Task<IBlockBackend> OpenSpecAsync(StoreSpec spec, StoreSpecOpenOptions options, CancellationToken cancellationToken) =>
        InMemoryProviders.OpenSpecAsync((MemoryStore)OpenStore(new Dictionary<string, string>(), new Dictionary<string, string>()), options, cancellationToken);
}

internal static class InMemoryProviders
{
    private const string SpecVolumeName = "volume";

    public static MemoryStore Open(string type, Func<long, IBlockBackend> createData, bool retainsData,
        IReadOnlyDictionary<string, string> parameters, IReadOnlyDictionary<string, string> secrets)
    {
        var p = new StoreParameters(parameters);
        long? capacity = p.Optional("capacity") is null ? null : p.Size("capacity", 0, StoreLimits.SizeGranularity, long.MaxValue);
        p.RejectUnknown();
        new StoreParameters(secrets, "secrets", secret: true).RejectUnknown();
        return new MemoryStore(type, createData, retainsData, capacity);
    }

    /// <summary>A private store holding the one volume; disposing the backend disposes the store.</summary>
    public static async Task<IBlockBackend> OpenSpecAsync(MemoryStore store, StoreSpecOpenOptions options, CancellationToken cancellationToken)
    {
        try
        {
            var size = options.SizeBytes ?? throw new StoreParameterException("size", $"a {store.Type} volume needs a size");
            await store.CreateVolumeAsync(new CreateVolumeRequest(SpecVolumeName, size), cancellationToken).ConfigureAwait(false);
            var volume = await store.OpenVolumeAsync(SpecVolumeName, options.ReadOnly ? VolumeAccess.ReadOnly : VolumeAccess.ReadWrite, cancellationToken).ConfigureAwait(false);
            return new OwningBackend(volume, store);
        }
        catch
        {
            await store.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }
}
