using UblkCsi.Stores;

namespace UblkCsi.Controller.Provisioning;

/// <summary>
/// The parameters of a CreateVolume or GetCapacity call split into the store type (<c>store</c>) and
/// that store's own parameters. Keys the CSI sidecars add (<c>csi.storage.k8s.io/*</c>) are stripped;
/// every other key is the store's to accept or reject (unknown keys are INVALID_ARGUMENT there).
/// </summary>
public sealed record StorageClassParameters(string StoreType, IReadOnlyDictionary<string, string> StoreParameters)
{
    /// <summary>The parameter that selects the store type.</summary>
    public const string StoreKey = "store";

    /// <summary>The prefix of keys reserved for Kubernetes and its sidecars.</summary>
    public const string SidecarPrefix = "csi.storage.k8s.io/";

    /// <summary>Splits and checks a parameter map.</summary>
    /// <exception cref="StoreParameterException">No or an unsupported <c>store</c>; names the allowed types.</exception>
    public static StorageClassParameters Parse(IReadOnlyDictionary<string, string> parameters, IReadOnlyCollection<string> allowedTypes)
    {
        var allowed = string.Join(", ", allowedTypes);
        if (!parameters.TryGetValue(StoreKey, out var type) || type.Length == 0)
        {
            throw new StoreParameterException(StoreKey, $"is required; allowed: {allowed}");
        }

        if (!allowedTypes.Contains(type))
        {
            throw new StoreParameterException(StoreKey, $"invalid value '{type}'; allowed: {allowed}");
        }

        return new StorageClassParameters(type, WithoutSidecarKeys(parameters, StoreKey));
    }

    /// <summary>The map without <c>csi.storage.k8s.io/*</c> keys and without <paramref name="alsoDrop"/>.</summary>
    public static Dictionary<string, string> WithoutSidecarKeys(IReadOnlyDictionary<string, string> parameters, string? alsoDrop = null)
    {
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (key, value) in parameters)
        {
            if (!key.StartsWith(SidecarPrefix, StringComparison.Ordinal) && key != alsoDrop)
            {
                result[key] = value;
            }
        }

        return result;
    }

    /// <summary>
    /// What the node plugin needs to open the volume: the store type and its parameters, never
    /// secrets (those reach the node as node-stage secrets).
    /// </summary>
    public Dictionary<string, string> ToVolumeContext()
    {
        var context = new Dictionary<string, string>(StoreParameters, StringComparer.Ordinal) { [StoreKey] = StoreType };
        return context;
    }
}
