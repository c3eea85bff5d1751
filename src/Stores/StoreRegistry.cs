using UblkCsi.Stores.Files;
using UblkCsi.Stores.InMemory;
using UblkCsi.Stores.Nbd;
using UblkCsi.Stores.Rpc;
using UblkCsi.Stores.S3;

namespace UblkCsi.Stores;

/// <summary>The store types this build knows, by name. The only place that lists them.</summary>
public static class StoreRegistry
{
    private static readonly IStoreProvider[] Providers =
    [
        FileStoreProvider.Instance,
        S3StoreProvider.Instance,
        MemoryStoreProvider.Instance,
        NullStoreProvider.Instance,
        RpcStoreProvider.Instance,
        NbdStoreProvider.Instance, NbdStoreProvider.Unix,
    ];

    /// <summary>Every registered type name, for help texts and errors.</summary>
    public static IReadOnlyList<string> Types { get; } = Providers.Select(p => p.Type).ToArray();

    /// <summary>The provider of a type.</summary>
    /// <exception cref="StoreParameterException">Unknown type (parameter "type"), listing the known ones.</exception>
    public static IStoreProvider Get(string type)
    {
        foreach (var provider in Providers)
        {
            if (provider.Type == type)
            {
                return provider;
            }
        }

        throw new StoreParameterException("type", $"unknown store type '{type}'; allowed: {string.Join(", ", Types)}");
    }

    /// <summary>Opens a store's control path from a StorageClass-style parameter map and CSI secrets.</summary>
    public static IVolumeStore Open(string type, IReadOnlyDictionary<string, string> parameters, IReadOnlyDictionary<string, string>? secrets = null) =>
        Get(type).OpenStore(parameters, secrets ?? new Dictionary<string, string>());
}
