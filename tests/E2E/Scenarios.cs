using System.Globalization;
using System.Text.RegularExpressions;
using k8s;
using k8s.Models;
using Xunit.Abstractions;

namespace UblkCsi.E2E;

/// <summary>
/// The six proofs of issue 10 point 4, each for one store: write and read back on a filesystem, raw
/// block, snapshot restore, clone, online expansion and a node plugin rolling restart under writes.
/// Readers run in a new pod after the writer's pod is gone, so the data comes back through a fresh
/// NodeStage of the volume, not from a page cache.
/// </summary>
public static partial class Scenarios
{
    const string WriteScript = """
        set -eu
        dd if=/dev/urandom of=/data/payload bs=1M count=16 conv=fsync
        echo "$MARK" > /data/MARK
        sync
        echo "HASH $(sha256sum /data/payload | cut -d' ' -f1)"
        """;

    const string ReadScript = """
        set -eu
        test "$(cat /data/MARK)" = "$MARK" || { echo "MARK-MISMATCH: $(cat /data/MARK)"; exit 1; }
        echo "HASH $(sha256sum /data/payload | cut -d' ' -f1)"
        """;

    // The writer of deploy/e2e/run.sh: 256 KiB files with fsync until /data/stop exists, each checksum
    // recorded; any failed write or sync ends the pod with IO-ERROR. Then every checksum is verified.
    const string LoopWriterScript = """
        set -u; i=0
        while [ ! -e /data/stop ]; do
          dd if=/dev/urandom of=/data/f.$i bs=64k count=4 conv=fsync 2> /tmp/dd.err || { echo "IO-ERROR write $i: $(cat /tmp/dd.err)"; exit 1; }
          sha256sum /data/f.$i >> /data/SUMS || { echo "IO-ERROR sums $i"; exit 1; }
          sync /data/SUMS || { echo "IO-ERROR sync $i"; exit 1; }
          i=$((i + 1)); sleep 0.05
        done
        echo "WROTE $i files"
        sha256sum -c -s /data/SUMS && echo VERIFIED || { echo "IO-ERROR verify"; exit 1; }
        """;

    static StoreClass Class(string store) => Cluster.Get().Stores[store];

    static string WithMark(string script, string mark) => $"MARK={mark}\n{script}";

    [GeneratedRegex(@"^HASH ([0-9a-f]{64})$", RegexOptions.Multiline)]
    private static partial Regex HashLine();

    static string Hash(string logs) =>
        HashLine().Match(logs) is { Success: true } m ? m.Groups[1].Value : throw new TestFailure($"no HASH line in:\n{logs}");

    /// <summary>Writes 16 MiB of random data and a marker onto the claim; returns the data's sha256.</summary>
    static async Task<string> WriteAsync(Resources res, string claim, ITestOutputHelper log)
    {
        var pod = res.Name("writer");
        var hash = Hash(await Pods.RunAsync(res, Pods.Pod(pod, claim, WithMark(WriteScript, res.Prefix)), log));
        await DeletePodAsync(res, pod);
        return hash;
    }

    /// <summary>Reads the data back in a new pod and checks marker and checksum.</summary>
    static async Task VerifyAsync(Resources res, string claim, string hash, string podSuffix, ITestOutputHelper log)
    {
        var logs = await Pods.RunAsync(res, Pods.Pod(res.Name(podSuffix), claim, WithMark(ReadScript, res.Prefix)), log);
        Assert.Equal(hash, Hash(logs));
    }

    static async Task DeletePodAsync(Resources res, string pod)
    {
        await res.Client.CoreV1.DeleteNamespacedPodAsync(pod, Cluster.AppNamespace, gracePeriodSeconds: 0);
        await Wait.UntilAsync($"pod {pod} deleted", Wait.PodDone, async () =>
        {
            try { await res.Client.CoreV1.ReadNamespacedPodAsync(pod, Cluster.AppNamespace); }
            catch (k8s.Autorest.HttpOperationException e) when (e.Response.StatusCode == System.Net.HttpStatusCode.NotFound)
            {
                return (true, "gone");
            }
            return (false, "terminating");
        });
    }

    /// <summary>(1) A filesystem PVC: a pod writes a file with its checksum, a second pod reads it back.</summary>
    public static async Task WriteReadAsync(string store, ITestOutputHelper log)
    {
        await using var res = await Resources.StartAsync(Cluster.Get(), store, "fs", log);
        var claim = res.Name("data");
        await res.CreateClaimAsync(Pods.Claim(claim, Class(store).StorageClass));
        var hash = await WriteAsync(res, claim, log);
        await res.WaitBoundAsync(claim);
        await VerifyAsync(res, claim, hash, "reader", log);
    }

    /// <summary>(2) A raw block PVC: dd onto /dev/xvda with fsync, read back with dd in a second pod.</summary>
    public static async Task RawBlockAsync(string store, ITestOutputHelper log)
    {
        await using var res = await Resources.StartAsync(Cluster.Get(), store, "block", log);
        var claim = res.Name("data");
        await res.CreateClaimAsync(Pods.Claim(claim, Class(store).StorageClass, block: true));
        const string write = """
            set -eu
            test -b /dev/xvda || { echo "/dev/xvda is not a block device"; exit 1; }
            dd if=/dev/urandom of=/tmp/src bs=1M count=16
            dd if=/tmp/src of=/dev/xvda bs=1M conv=fsync
            echo "HASH $(sha256sum < /tmp/src | cut -d' ' -f1)"
            """;
        const string read = """
            set -eu
            dd if=/dev/xvda of=/tmp/back bs=1M count=16
            echo "HASH $(sha256sum < /tmp/back | cut -d' ' -f1)"
            """;
        var writer = res.Name("writer");
        var hash = Hash(await Pods.RunAsync(res, Pods.Pod(writer, claim, write, block: true), log));
        await DeletePodAsync(res, writer);
        var back = Hash(await Pods.RunAsync(res, Pods.Pod(res.Name("reader"), claim, read, block: true), log));
        Assert.Equal(hash, back);
    }

    /// <summary>(3) A VolumeSnapshot of a written PVC restored into a new PVC holds the same data.</summary>
    public static async Task SnapshotRestoreAsync(string store, ITestOutputHelper log)
    {
        var cls = Class(store);
        await using var res = await Resources.StartAsync(Cluster.Get(), store, "snap", log);
        var source = res.Name("source");
        await res.CreateClaimAsync(Pods.Claim(source, cls.StorageClass));
        var hash = await WriteAsync(res, source, log);
        var snapshot = res.Name("snapshot");
        await res.CreateSnapshotAsync(snapshot, source, cls.SnapshotClass!);
        var restored = res.Name("restored");
        await res.CreateClaimAsync(Pods.Claim(restored, cls.StorageClass, dataSource: new V1TypedLocalObjectReference
        {
            ApiGroup = Resources.SnapshotGroup,
            Kind = "VolumeSnapshot",
            Name = snapshot,
        }));
        await VerifyAsync(res, restored, hash, "reader", log);
    }

    /// <summary>(4) A clone (dataSource: the PVC) of a written PVC holds the same data.</summary>
    public static async Task CloneAsync(string store, ITestOutputHelper log)
    {
        var cls = Class(store);
        await using var res = await Resources.StartAsync(Cluster.Get(), store, "clone", log);
        var source = res.Name("source");
        await res.CreateClaimAsync(Pods.Claim(source, cls.StorageClass));
        var hash = await WriteAsync(res, source, log);
        var clone = res.Name("clone");
        await res.CreateClaimAsync(Pods.Claim(clone, cls.StorageClass, dataSource: new V1TypedLocalObjectReference
        {
            Kind = "PersistentVolumeClaim",
            Name = source,
        }));
        await VerifyAsync(res, clone, hash, "reader", log);
    }

    /// <summary>(5) 1Gi grown to 2Gi while a pod has it mounted: df in the pod shows the new size, data intact.</summary>
    public static async Task ExpandAsync(string store, ITestOutputHelper log)
    {
        var cls = Class(store);
        await using var res = await Resources.StartAsync(Cluster.Get(), store, "expand", log);
        var claim = res.Name("data");
        await res.CreateClaimAsync(Pods.Claim(claim, cls.StorageClass));
        var pod = res.Name("pod");
        const string script = """
            set -eu
            dd if=/dev/urandom of=/data/payload bs=1M count=16 conv=fsync
            sha256sum /data/payload > /data/SUMS
            sync
            while true; do sleep 5; done
            """;
        await Pods.StartAsync(res, Pods.Pod(pod, claim, script), log);
        await res.WaitBoundAsync(claim);
        await Wait.UntilAsync("payload written", Wait.PodDone, async () =>
        {
            var (code, _, _) = await Pods.ExecAsync(res.Client, pod, "test", "-s", "/data/SUMS");
            return (code == 0, code == 0 ? "written" : "writing");
        }, log);
        var before = await DfKiBAsync(res.Client, pod);
        log.WriteLine($"df before: {before} KiB");
        Assert.InRange(before, 1, 1L << 20);

        var patch = new V1Patch("""{"spec":{"resources":{"requests":{"storage":"2Gi"}}}}""", V1Patch.PatchType.MergePatch);
        await res.Client.CoreV1.PatchNamespacedPersistentVolumeClaimAsync(patch, claim, Cluster.AppNamespace);
        const long twoGi = 2L << 30;
        await Wait.UntilAsync($"pvc {claim} capacity 2Gi", Wait.Expansion, async () =>
        {
            var pvc = await res.Client.CoreV1.ReadNamespacedPersistentVolumeClaimAsync(claim, Cluster.AppNamespace);
            var capacity = pvc.Status?.Capacity is { } c && c.TryGetValue("storage", out var q) ? q.ToInt64() : 0;
            var conditions = string.Join(",", pvc.Status?.Conditions?.Select(x => $"{x.Type}={x.Status}") ?? []);
            return (capacity >= twoGi, $"capacity {capacity} conditions [{conditions}]");
        }, log);
        // ext4 and xfs keep some of the device for metadata: more than 1.5 GiB proves the resize.
        await Wait.UntilAsync("df in the pod shows the new size", Wait.Expansion, async () =>
        {
            var size = await DfKiBAsync(res.Client, pod);
            return (size > 1536L * 1024, $"{size} KiB");
        }, log);
        var (check, stdout, stderr) = await Pods.ExecAsync(res.Client, pod, "sha256sum", "-c", "/data/SUMS");
        Assert.True(check == 0, $"checksum after expansion: {stdout}{stderr}");
        Assert.Equal(0, await Pods.RestartsAsync(res.Client, pod));
    }

    static async Task<long> DfKiBAsync(IKubernetes client, string pod)
    {
        var (code, stdout, stderr) = await Pods.ExecAsync(client, pod, "df", "-P", "-k", "/data");
        if (code != 0) throw new InvalidOperationException($"df failed ({code}): {stderr}");
        // Filesystem 1024-blocks Used Available Capacity Mounted-on
        var line = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries)[^1];
        return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture);
    }

    /// <summary>
    /// (6) The node DaemonSet rolled (as `kubectl rollout restart`) while a pod writes files with
    /// checksums: the writer sees no I/O error, every checksum verifies, and the pod never restarted.
    /// </summary>
    public static async Task NodeRolloutAsync(string store, ITestOutputHelper log)
    {
        var cluster = Cluster.Get();
        await using var res = await Resources.StartAsync(cluster, store, "roll", log);
        var claim = res.Name("data");
        await res.CreateClaimAsync(Pods.Claim(claim, Class(store).StorageClass));
        var pod = res.Name("writer");
        await Pods.StartAsync(res, Pods.Pod(pod, claim, LoopWriterScript), log);
        await Task.Delay(TimeSpan.FromSeconds(15));

        await RolloutRestartAsync(cluster, log);
        await Task.Delay(TimeSpan.FromSeconds(15));

        var p = await res.Client.CoreV1.ReadNamespacedPodAsync(pod, Cluster.AppNamespace);
        if (p.Status?.Phase != "Running")
            throw new TestFailure($"writer is {p.Status?.Phase} after the node plugin restart; logs:\n{await Pods.LogsAsync(res.Client, pod)}");
        var (code, _, stderr) = await Pods.ExecAsync(res.Client, pod, "touch", "/data/stop");
        Assert.True(code == 0, $"touch /data/stop failed: {stderr}");

        var phase = "";
        await Wait.UntilAsync($"writer {pod} ends", Wait.PodDone, async () =>
        {
            var q = await res.Client.CoreV1.ReadNamespacedPodAsync(pod, Cluster.AppNamespace);
            phase = q.Status?.Phase ?? "";
            return (phase is "Succeeded" or "Failed", phase);
        }, log);
        var logs = await Pods.LogsAsync(res.Client, pod);
        log.WriteLine($"writer {phase}; logs:\n{logs}");
        Assert.DoesNotContain("IO-ERROR", logs);
        Assert.Contains("VERIFIED", logs);
        Assert.Equal("Succeeded", phase);
        var wrote = Regex.Match(logs, @"WROTE (\d+) files");
        Assert.True(wrote.Success && int.Parse(wrote.Groups[1].Value, CultureInfo.InvariantCulture) > 0, "the writer wrote no file");
        Assert.Equal(0, await Pods.RestartsAsync(res.Client, pod));
    }

    /// <summary>Patches the pod template's restartedAt annotation and waits until every node runs a new plugin pod.</summary>
    static async Task RolloutRestartAsync(Cluster cluster, ITestOutputHelper log)
    {
        var apps = cluster.Client.AppsV1;
        var name = cluster.NodeDaemonSet;
        var ns = Cluster.ChartNamespace;
        var now = DateTime.UtcNow.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture);
        var body = new { spec = new { template = new { metadata = new { annotations = new Dictionary<string, string>
        {
            ["kubectl.kubernetes.io/restartedAt"] = now,
        } } } } };
        var patch = new V1Patch(System.Text.Json.JsonSerializer.Serialize(body), V1Patch.PatchType.MergePatch);
        var patched = await apps.PatchNamespacedDaemonSetAsync(patch, name, ns);
        var generation = patched.Metadata.Generation ?? 0;
        log.WriteLine($"daemonset {ns}/{name} restarted at {now} (generation {generation})");
        await Wait.UntilAsync($"rollout of {name}", Wait.Rollout, async () =>
        {
            var ds = await apps.ReadNamespacedDaemonSetAsync(name, ns);
            var s = ds.Status;
            var done = s.ObservedGeneration >= generation
                && s.UpdatedNumberScheduled == s.DesiredNumberScheduled
                && s.NumberAvailable == s.DesiredNumberScheduled
                && (s.NumberUnavailable ?? 0) == 0;
            return (done, $"observed {s.ObservedGeneration}/{generation} updated {s.UpdatedNumberScheduled} " +
                          $"available {s.NumberAvailable} desired {s.DesiredNumberScheduled}");
        }, log);
    }
}
