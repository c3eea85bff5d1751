using UblkCsi.Engine.Backends.Qos;
using UblkCsi.Stores;

namespace UblkCsi.Controller.Provisioning;

/// <summary>
/// The parameters of a CreateVolume or GetCapacity call split into the store type (<c>store</c>), the
/// volume's QoS limits (<see cref="QosLimits.ParameterNames"/>, which the node plugin enforces) and
/// that store's own parameters. Keys the CSI sidecars add (<c>csi.storage.k8s.io/*</c>) are stripped;
/// every other key is the store's to accept or reject (unknown keys are INVALID_ARGUMENT there).
/// </summary>
public sealed record StorageClassParameters(string StoreType, IReadOnlyDictionary<string, string> StoreParameters)
{
    /// <summary>The volume's limits: from the StorageClass, overridden by CreateVolume's mutable parameters.</summary>
    public QosLimits Qos { get; init; } = QosLimits.Unlimited;

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

        var storeParameters = WithoutSidecarKeys(parameters, StoreKey);
        var qos = ParseQos(storeParameters);
        foreach (var key in QosLimits.ParameterNames)
        {
            storeParameters.Remove(key);
        }

        return new StorageClassParameters(type, storeParameters) { Qos = qos };
    }

    /// <summary>
    /// Mutable parameters (CreateVolume's, or ControllerModifyVolume's from a VolumeAttributesClass):
    /// only QoS keys are mutable; any other key is INVALID_ARGUMENT naming it and the allowed keys.
    /// </summary>
    /// <exception cref="StoreParameterException">A key that is not mutable, or a bad value.</exception>
    public static QosLimits ParseMutable(IReadOnlyDictionary<string, string> mutableParameters)
    {
        foreach (var key in mutableParameters.Keys)
        {
            if (!QosLimits.IsParameter(key))
            {
                throw new StoreParameterException(key, $"is not a mutable parameter; allowed: {string.Join(", ", QosLimits.ParameterNames)}");
            }
        }

        return ParseQos(mutableParameters);
    }

    /// <summary>The QoS keys of a map as limits; a bad value names its key.</summary>
    private static QosLimits ParseQos(IReadOnlyDictionary<string, string> parameters)
    {
        try
        {
            return QosLimits.Parse(parameters);
        }
        catch (ArgumentException e)
        {
            throw new StoreParameterException(e.ParamName ?? "qos", e.Message.Split(" (Parameter", 2)[0].Replace($"parameter '{e.ParamName}': ", string.Empty, StringComparison.Ordinal));
        }
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
        foreach (var (key, value) in Qos.ToParameters())
        {
            context[key] = value;
        }

        return context;
    }
}
