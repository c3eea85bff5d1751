using UblkCsi.Engine.Backends.Qos;

namespace UblkCsi.NodePlugin.Volumes;

/// <summary>
/// The store a volume lives in, read from its volume_context (what CreateVolume returned, or a static
/// PV's volumeAttributes): <c>store</c> names the type and the remaining keys are that store's
/// StorageClass parameters. Keys under <c>csi.storage.k8s.io/</c> belong to Kubernetes (pod info,
/// ephemeral flag, PV name) and never reach the store; the QoS keys (<see cref="QosLimits.ParameterNames"/>)
/// are the node's: it enforces them in the data path.
/// </summary>
public sealed record VolumeContext(string StoreType, IReadOnlyDictionary<string, string> StoreParameters)
{
    /// <summary>The volume's I/O limits (unlimited when the context names none).</summary>
    public QosLimits Qos { get; init; } = QosLimits.Unlimited;

    /// <summary>The volume_context key naming the store type.</summary>
    public const string StoreKey = "store";

    private const string KubernetesPrefix = "csi.storage.k8s.io/";

    /// <summary>Reads the store from a volume_context; false with the reason when it names none.</summary>
    public static bool TryRead(IReadOnlyDictionary<string, string> context, out VolumeContext result, out string problem)
    {
        result = new VolumeContext(string.Empty, new Dictionary<string, string>());
        if (!context.TryGetValue(StoreKey, out var store) || string.IsNullOrWhiteSpace(store))
        {
            problem = $"volume_context has no '{StoreKey}' key (file, s3 or rpc); it comes from CreateVolume or the PV's volumeAttributes";
            return false;
        }

        var parameters = new SortedDictionary<string, string>(StringComparer.Ordinal);
        var qos = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (key, value) in context)
        {
            if (QosLimits.IsParameter(key))
            {
                qos[key] = value;
            }
            else if (key != StoreKey && !key.StartsWith(KubernetesPrefix, StringComparison.Ordinal))
            {
                parameters[key] = value;
            }
        }

        QosLimits limits;
        try
        {
            limits = QosLimits.Parse(qos);
        }
        catch (ArgumentException e)
        {
            problem = $"volume_context has an invalid QoS limit: {e.Message}";
            return false;
        }

        result = new VolumeContext(store, parameters) { Qos = limits };
        problem = string.Empty;
        return true;
    }

    /// <summary>Same store type and the same parameters.</summary>
    public bool SameStoreAs(VolumeContext other) =>
        StoreType == other.StoreType
        && StoreParameters.Count == other.StoreParameters.Count
        && StoreParameters.All(p => other.StoreParameters.TryGetValue(p.Key, out var v) && v == p.Value);
}
