using System.Text.Json;
using k8s;
using k8s.Models;

namespace UblkCsi.E2E;

/// <summary>A store class of the installed chart: its StorageClass and, when present, its VolumeSnapshotClass.</summary>
public sealed record StoreClass(string Store, string StorageClass, string Provisioner, bool AllowExpansion, string? SnapshotClass);

/// <summary>
/// The cluster in KUBECONFIG (or ~/.kube/config) with the chart installed, probed once per test run.
/// Namespace, release and the namespace of the test pods come from UBLK_E2E_NAMESPACE (ublk-system),
/// UBLK_E2E_RELEASE (ublk-csi) and UBLK_E2E_APP_NAMESPACE (ublk-e2e), the names deploy/e2e/run.sh uses.
/// Every reason a test cannot run here is a skip reason, never a pass.
/// </summary>
public sealed class Cluster
{
    public static string ChartNamespace { get; } = Env("UBLK_E2E_NAMESPACE", "ublk-system");
    public static string Release { get; } = Env("UBLK_E2E_RELEASE", "ublk-csi");
    public static string AppNamespace { get; } = Env("UBLK_E2E_APP_NAMESPACE", "ublk-e2e");
    /// <summary>busybox with sh, dd, sha256sum and df; override for air-gapped clusters.</summary>
    public static string Image { get; } = Env("UBLK_E2E_IMAGE", "busybox:1.36");

    static readonly Lazy<(Cluster? Cluster, string? Skip)> Probed = new(() => ProbeAsync().GetAwaiter().GetResult());

    public IKubernetes Client { get; }
    /// <summary>The node plugin DaemonSet of the release.</summary>
    public string NodeDaemonSet { get; }
    public IReadOnlyDictionary<string, StoreClass> Stores { get; }
    /// <summary>Why no snapshot class could be found (CRDs missing, classes disabled), or null.</summary>
    public string? SnapshotProblem { get; }

    Cluster(IKubernetes client, string nodeDaemonSet, IReadOnlyDictionary<string, StoreClass> stores, string? snapshotProblem)
    {
        Client = client;
        NodeDaemonSet = nodeDaemonSet;
        Stores = stores;
        SnapshotProblem = snapshotProblem;
    }

    /// <summary>The probed cluster; only called from tests that were not skipped.</summary>
    public static Cluster Get() =>
        Probed.Value.Cluster ?? throw new InvalidOperationException("no cluster: " + Probed.Value.Skip);

    /// <summary>Why a test of <paramref name="store"/> needing <paramref name="need"/> cannot run, or null when it can.</summary>
    public static string? SkipReason(string store, Need need)
    {
        var (cluster, skip) = Probed.Value;
        if (cluster is null) return skip;
        if (!cluster.Stores.TryGetValue(store, out var cls))
            return $"store {store}: the release {Release} has no StorageClass with parameters.store={store} " +
                   $"(storageClasses.{store}.enabled=false)";
        if (need == Need.Snapshot && cls.SnapshotClass is null)
            return $"store {store}: no VolumeSnapshotClass for driver {cls.Provisioner}: " +
                   (cluster.SnapshotProblem ?? $"none of the VolumeSnapshotClasses of release {Release} has that driver");
        if (need == Need.Expansion && !cls.AllowExpansion)
            return $"store {store}: StorageClass {cls.StorageClass} has allowVolumeExpansion false";
        return null;
    }

    static string Env(string name, string fallback) =>
        Environment.GetEnvironmentVariable(name) is { Length: > 0 } v ? v : fallback;

    static async Task<(Cluster?, string?)> ProbeAsync()
    {
        KubernetesClientConfiguration config;
        var kubeconfig = Environment.GetEnvironmentVariable("KUBECONFIG");
        var home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
        var defaultFile = Path.Combine(home, ".kube", "config");
        try
        {
            if (!string.IsNullOrEmpty(kubeconfig))
            {
                var first = kubeconfig.Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries).FirstOrDefault(File.Exists);
                if (first is null) return (null, $"no cluster: KUBECONFIG={kubeconfig} names no existing file");
                config = KubernetesClientConfiguration.BuildConfigFromConfigFile(first);
            }
            else if (File.Exists(defaultFile))
                config = KubernetesClientConfiguration.BuildConfigFromConfigFile(defaultFile);
            else if (KubernetesClientConfiguration.IsInCluster())
                config = KubernetesClientConfiguration.InClusterConfig();
            else
                return (null, $"no cluster: KUBECONFIG unset and {defaultFile} missing");
        }
        catch (Exception e)
        {
            return (null, $"no cluster: kubeconfig unusable ({e.GetType().Name}: {e.Message})");
        }

        config.HttpClientTimeout = TimeSpan.FromSeconds(30);
        var client = new Kubernetes(config);
        try
        {
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            await client.Version.GetCodeAsync(cts.Token);
        }
        catch (Exception e)
        {
            return (null, $"no cluster: API unreachable at {config.Host} ({e.GetType().Name}: {e.Message})");
        }

        try
        {
            var instance = $"app.kubernetes.io/instance={Release}";
            var daemonSets = await client.AppsV1.ListNamespacedDaemonSetAsync(ChartNamespace,
                labelSelector: instance + ",app.kubernetes.io/component=node");
            if (daemonSets.Items.Count == 0)
                return (null, $"chart not installed: no node DaemonSet of release {Release} in namespace {ChartNamespace} " +
                              "(set UBLK_E2E_NAMESPACE / UBLK_E2E_RELEASE)");
            var nodeDaemonSet = daemonSets.Items[0].Metadata.Name;

            var stores = new Dictionary<string, StoreClass>();
            var storageClasses = await client.StorageV1.ListStorageClassAsync(labelSelector: instance);
            var (snapshotClasses, snapshotProblem) = await SnapshotClassesAsync(client, instance);
            foreach (var sc in storageClasses.Items)
            {
                if (sc.Parameters is null || !sc.Parameters.TryGetValue("store", out var store)) continue;
                var snapshotClass = snapshotClasses
                    .Where(c => c.Driver == sc.Provisioner)
                    .OrderByDescending(c => c.Name.EndsWith("-" + store, StringComparison.Ordinal))
                    .Select(c => c.Name).FirstOrDefault();
                stores[store] = new StoreClass(store, sc.Metadata.Name, sc.Provisioner,
                    sc.AllowVolumeExpansion == true, snapshotClass);
            }
            return (new Cluster(client, nodeDaemonSet, stores, snapshotProblem), null);
        }
        catch (Exception e)
        {
            return (null, $"chart not installed or not readable: {e.GetType().Name}: {e.Message}");
        }
    }

    static async Task<(List<(string Name, string Driver)>, string?)> SnapshotClassesAsync(IKubernetes client, string instance)
    {
        try
        {
            var list = await client.CustomObjects.ListClusterCustomObjectAsync<JsonElement>(
                "snapshot.storage.k8s.io", "v1", "volumesnapshotclasses", labelSelector: instance);
            var result = new List<(string, string)>();
            foreach (var item in list.GetProperty("items").EnumerateArray())
                result.Add((item.GetProperty("metadata").GetProperty("name").GetString()!,
                            item.GetProperty("driver").GetString()!));
            return (result, result.Count == 0 ? $"release {Release} has no VolumeSnapshotClass (volumeSnapshotClass.enabled=false)" : null);
        }
        catch (k8s.Autorest.HttpOperationException e) when (e.Response.StatusCode == System.Net.HttpStatusCode.NotFound)
        {
            return ([], "the snapshot.storage.k8s.io/v1 CRDs are not installed");
        }
    }
}

/// <summary>What a test needs of its store class beyond the class itself.</summary>
public enum Need { None, Snapshot, Expansion }

/// <summary>
/// A fact about one store that is skipped, with the reason, when no cluster is reachable, the chart is
/// not installed, the store's class is absent or lacks what the test needs. Evaluated at discovery.
/// </summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class StoreFactAttribute : FactAttribute
{
    public StoreFactAttribute(string store, Need need = Need.None)
    {
        Store = store;
        var reason = Cluster.SkipReason(store, need);
        if (reason is not null) Skip = reason;
    }

    public string Store { get; }
}
