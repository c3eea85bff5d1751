using System.Text.Json;
using k8s;
using k8s.Models;
using Xunit.Abstractions;

namespace UblkCsi.E2E;

/// <summary>
/// What one test created in the app namespace (pods, PVCs, VolumeSnapshots), deleted in reverse order
/// when disposed (in the test's finally), so a failed test leaves nothing behind.
/// </summary>
public sealed class Resources : IAsyncDisposable
{
    public const string SnapshotGroup = "snapshot.storage.k8s.io";
    public static readonly Dictionary<string, string> Labels = new() { ["app.kubernetes.io/part-of"] = "ublk-csi-e2e" };

    readonly List<(string Kind, string Name)> _created = [];
    readonly ITestOutputHelper _log;

    public IKubernetes Client { get; }
    /// <summary>Prefix of every name this test creates: e2e-STORE-SCENARIO-RANDOM.</summary>
    public string Prefix { get; }

    Resources(IKubernetes client, string prefix, ITestOutputHelper log)
    {
        Client = client;
        Prefix = prefix;
        _log = log;
    }

    public static async Task<Resources> StartAsync(Cluster cluster, string store, string scenario, ITestOutputHelper log)
    {
        await EnsureNamespaceAsync(cluster.Client);
        var prefix = $"e2e-{store}-{scenario}-{Guid.NewGuid().ToString("N")[..6]}";
        log.WriteLine($"namespace {Cluster.AppNamespace}, names {prefix}-*");
        return new Resources(cluster.Client, prefix, log);
    }

    public string Name(string suffix) => $"{Prefix}-{suffix}";

    public async Task CreatePodAsync(V1Pod pod)
    {
        _created.Add(("pod", pod.Metadata.Name));
        await Client.CoreV1.CreateNamespacedPodAsync(pod, Cluster.AppNamespace);
    }

    public async Task CreateClaimAsync(V1PersistentVolumeClaim claim)
    {
        _created.Add(("pvc", claim.Metadata.Name));
        await Client.CoreV1.CreateNamespacedPersistentVolumeClaimAsync(claim, Cluster.AppNamespace);
    }

    /// <summary>A VolumeSnapshot of <paramref name="claim"/>; waits until readyToUse, throws on a status error.</summary>
    public async Task CreateSnapshotAsync(string name, string claim, string snapshotClass)
    {
        var body = new Dictionary<string, object>
        {
            ["apiVersion"] = SnapshotGroup + "/v1",
            ["kind"] = "VolumeSnapshot",
            ["metadata"] = new Dictionary<string, object> { ["name"] = name, ["labels"] = Labels },
            ["spec"] = new Dictionary<string, object>
            {
                ["volumeSnapshotClassName"] = snapshotClass,
                ["source"] = new Dictionary<string, object> { ["persistentVolumeClaimName"] = claim },
            },
        };
        _created.Add(("volumesnapshot", name));
        await Client.CustomObjects.CreateNamespacedCustomObjectAsync(body, SnapshotGroup, "v1", Cluster.AppNamespace, "volumesnapshots");
        await Wait.UntilAsync($"snapshot {name} ready", Wait.Snapshot, async () =>
        {
            var snap = await Client.CustomObjects.GetNamespacedCustomObjectAsync<JsonElement>(
                SnapshotGroup, "v1", Cluster.AppNamespace, "volumesnapshots", name);
            if (!snap.TryGetProperty("status", out var status)) return (false, "no status yet");
            if (status.TryGetProperty("error", out var error) && error.TryGetProperty("message", out var message))
                _log.WriteLine($"snapshot {name} error (the snapshotter may retry): {message}");
            var ready = status.TryGetProperty("readyToUse", out var r) && r.ValueKind == JsonValueKind.True;
            return (ready, status.GetRawText());
        }, _log);
    }

    /// <summary>Waits until the claim is Bound (WaitForFirstConsumer classes: after its pod was created).</summary>
    public async Task WaitBoundAsync(string claim) =>
        await Wait.UntilAsync($"pvc {claim} bound", Wait.Bind, async () =>
        {
            var pvc = await Client.CoreV1.ReadNamespacedPersistentVolumeClaimAsync(claim, Cluster.AppNamespace);
            return (pvc.Status?.Phase == "Bound", pvc.Status?.Phase ?? "no status");
        }, _log);

    public async ValueTask DisposeAsync()
    {
        for (var i = _created.Count - 1; i >= 0; i--)
        {
            var (kind, name) = _created[i];
            try
            {
                switch (kind)
                {
                    case "pod":
                        await Client.CoreV1.DeleteNamespacedPodAsync(name, Cluster.AppNamespace, gracePeriodSeconds: 0);
                        await WaitGoneAsync(async () => await Client.CoreV1.ReadNamespacedPodAsync(name, Cluster.AppNamespace));
                        break;
                    case "pvc":
                        await Client.CoreV1.DeleteNamespacedPersistentVolumeClaimAsync(name, Cluster.AppNamespace);
                        break;
                    case "volumesnapshot":
                        await Client.CustomObjects.DeleteNamespacedCustomObjectAsync(
                            SnapshotGroup, "v1", Cluster.AppNamespace, "volumesnapshots", name);
                        break;
                }
            }
            catch (k8s.Autorest.HttpOperationException e) when (e.Response.StatusCode == System.Net.HttpStatusCode.NotFound)
            {
            }
            catch (Exception e)
            {
                _log.WriteLine($"cleanup of {kind} {name} failed: {e.Message}");
            }
        }
    }

    /// <summary>Pods are waited for, so the next delete (their PVC) is not held by pvc-protection for long.</summary>
    static async Task WaitGoneAsync(Func<Task> read)
    {
        for (var i = 0; i < 60; i++)
        {
            try { await read(); }
            catch (k8s.Autorest.HttpOperationException e) when (e.Response.StatusCode == System.Net.HttpStatusCode.NotFound) { return; }
            await Task.Delay(TimeSpan.FromSeconds(2));
        }
    }

    static async Task EnsureNamespaceAsync(IKubernetes client)
    {
        try
        {
            await client.CoreV1.ReadNamespaceAsync(Cluster.AppNamespace);
        }
        catch (k8s.Autorest.HttpOperationException e) when (e.Response.StatusCode == System.Net.HttpStatusCode.NotFound)
        {
            try
            {
                await client.CoreV1.CreateNamespaceAsync(new V1Namespace { Metadata = new V1ObjectMeta { Name = Cluster.AppNamespace } });
            }
            catch (k8s.Autorest.HttpOperationException c) when (c.Response.StatusCode == System.Net.HttpStatusCode.Conflict)
            {
            }
        }
    }
}
