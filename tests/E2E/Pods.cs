using System.Text;
using k8s;
using k8s.Models;
using Xunit.Abstractions;

namespace UblkCsi.E2E;

/// <summary>Busybox pods on a volume: run a script to completion, read logs, exec, and PVCs to put under them.</summary>
public static class Pods
{
    /// <summary>A ReadWriteOnce claim of <paramref name="storageClass"/>, optionally from a data source (snapshot or PVC).</summary>
    public static V1PersistentVolumeClaim Claim(string name, string storageClass, string size = "1Gi",
        bool block = false, V1TypedLocalObjectReference? dataSource = null) => new()
        {
            Metadata = new V1ObjectMeta { Name = name, Labels = Resources.Labels },
            Spec = new V1PersistentVolumeClaimSpec
            {
                AccessModes = ["ReadWriteOnce"],
                StorageClassName = storageClass,
                VolumeMode = block ? "Block" : "Filesystem",
                Resources = new V1VolumeResourceRequirements
                {
                    Requests = new Dictionary<string, ResourceQuantity> { ["storage"] = new ResourceQuantity(size) },
                },
                DataSource = dataSource,
            },
        };

    /// <summary>A busybox pod running <paramref name="script"/> with the claim at /data (filesystem) or /dev/xvda (block).</summary>
    public static V1Pod Pod(string name, string claim, string script, bool block = false) => new()
    {
        Metadata = new V1ObjectMeta { Name = name, Labels = Resources.Labels },
        Spec = new V1PodSpec
        {
            RestartPolicy = "Never",
            TerminationGracePeriodSeconds = 5,
            Containers =
            [
                new V1Container
                {
                    Name = "main",
                    Image = Cluster.Image,
                    Command = ["sh", "-c", script],
                    VolumeMounts = block ? null : [new V1VolumeMount { Name = "data", MountPath = "/data" }],
                    VolumeDevices = block ? [new V1VolumeDevice { Name = "data", DevicePath = "/dev/xvda" }] : null,
                },
            ],
            Volumes =
            [
                new V1Volume
                {
                    Name = "data",
                    PersistentVolumeClaim = new V1PersistentVolumeClaimVolumeSource { ClaimName = claim },
                },
            ],
        },
    };

    /// <summary>Creates the pod, waits until it ends, returns its logs; throws with the logs unless it Succeeded.</summary>
    public static async Task<string> RunAsync(Resources res, V1Pod pod, ITestOutputHelper log)
    {
        var client = res.Client;
        var ns = Cluster.AppNamespace;
        await res.CreatePodAsync(pod);
        var name = pod.Metadata.Name;
        string phase = "";
        await Wait.UntilAsync($"pod {name} ends", Wait.PodDone, async () =>
        {
            var p = await client.CoreV1.ReadNamespacedPodAsync(name, ns);
            phase = p.Status?.Phase ?? "";
            return (phase is "Succeeded" or "Failed", Describe(p));
        }, log);
        var logs = await LogsAsync(client, name);
        log.WriteLine($"pod {name} {phase}; logs:\n{logs}");
        if (phase != "Succeeded") throw new TestFailure($"pod {name} {phase}; logs:\n{logs}");
        return logs;
    }

    /// <summary>Creates the pod and waits until it is Running with its container ready.</summary>
    public static async Task StartAsync(Resources res, V1Pod pod, ITestOutputHelper log)
    {
        var client = res.Client;
        var ns = Cluster.AppNamespace;
        await res.CreatePodAsync(pod);
        var name = pod.Metadata.Name;
        await Wait.UntilAsync($"pod {name} running", Wait.PodDone, async () =>
        {
            var p = await client.CoreV1.ReadNamespacedPodAsync(name, ns);
            if (p.Status?.Phase is "Succeeded" or "Failed")
                throw new TestFailure($"pod {name} ended ({p.Status.Phase}) before it was checked; logs:\n{await LogsAsync(client, name)}");
            var ready = p.Status?.ContainerStatuses?.All(c => c.Ready) == true && p.Status.Phase == "Running";
            return (ready, Describe(p));
        }, log);
    }

    public static async Task<string> LogsAsync(IKubernetes client, string pod)
    {
        try
        {
            using var stream = await client.CoreV1.ReadNamespacedPodLogAsync(pod, Cluster.AppNamespace, container: "main");
            using var reader = new StreamReader(stream);
            return await reader.ReadToEndAsync();
        }
        catch (Exception e)
        {
            return $"(no logs: {e.Message})";
        }
    }

    /// <summary>Runs a command in the pod's container; returns its exit code and output.</summary>
    public static async Task<(int Code, string Stdout, string Stderr)> ExecAsync(IKubernetes client, string pod, params string[] command)
    {
        string stdout = "", stderr = "";
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        var code = await client.NamespacedPodExecAsync(pod, Cluster.AppNamespace, "main", command, false,
            async (stdin, outStream, errStream) =>
            {
                stdin.Close();
                var o = new StreamReader(outStream, Encoding.UTF8).ReadToEndAsync(cts.Token);
                var e = new StreamReader(errStream, Encoding.UTF8).ReadToEndAsync(cts.Token);
                stdout = await o;
                stderr = await e;
            }, cts.Token);
        return (code, stdout, stderr);
    }

    /// <summary>Sum of container restarts of the pod.</summary>
    public static async Task<int> RestartsAsync(IKubernetes client, string pod)
    {
        var p = await client.CoreV1.ReadNamespacedPodAsync(pod, Cluster.AppNamespace);
        return p.Status?.ContainerStatuses?.Sum(c => c.RestartCount) ?? 0;
    }

    static string Describe(V1Pod p)
    {
        var waiting = p.Status?.ContainerStatuses?.Select(c => c.State?.Waiting?.Reason).FirstOrDefault(r => r is not null);
        var scheduled = p.Status?.Conditions?.FirstOrDefault(c => c.Type == "PodScheduled");
        var detail = waiting ?? (scheduled?.Status == "False" ? $"unschedulable: {scheduled.Message}" : null);
        return $"{p.Status?.Phase}{(detail is null ? "" : " (" + detail + ")")} on {p.Spec.NodeName ?? "no node"}";
    }
}
