using UblkCsi.NodePlugin.State;
using UblkCsi.NodePlugin.Volumes;

namespace UblkCsi.NodePlugin.Tests;

/// <summary>The small types the node service builds on: IDs, contexts, paths, records.</summary>
public sealed class VolumePiecesTests
{
    [Fact]
    public async Task TheShutdownWaitsForTheCallThatHoldsAVolumeAndKeepsItsLock()
    {
        var locks = new VolumeLocks();
        var call = locks.TryAcquire("vol")!;
        var shutdown = locks.AcquireAsync("vol");
        await Task.Delay(200);
        Assert.False(shutdown.IsCompleted);

        call.Dispose();
        await shutdown.WaitAsync(TimeSpan.FromSeconds(10));

        Assert.Null(locks.TryAcquire("vol"));
        Assert.NotNull(locks.TryAcquire("other"));
    }

    [Fact]
    public void ContextDropsTheStoreKeyAndKubernetesKeys()
    {
        var context = new Dictionary<string, string>
        {
            ["store"] = "s3", ["bucket"] = "b", ["csi.storage.k8s.io/pod.name"] = "p", ["csi.storage.k8s.io/ephemeral"] = "false",
        };

        Assert.True(VolumeContext.TryRead(context, out var read, out _));
        Assert.Equal("s3", read.StoreType);
        Assert.Equal(["bucket"], read.StoreParameters.Keys);
        Assert.False(VolumeContext.TryRead(new Dictionary<string, string> { ["bucket"] = "b" }, out _, out var problem));
        Assert.Contains("'store'", problem);
    }

    [Fact]
    public void QosKeysAreTheNodesNotTheStores()
    {
        var context = new Dictionary<string, string> { ["store"] = "file", ["root"] = "/srv", ["maxIops"] = "400", ["maxBytesPerSecond"] = "8388608" };

        Assert.True(VolumeContext.TryRead(context, out var read, out _));
        Assert.Equal(["root"], read.StoreParameters.Keys);
        Assert.Equal((400L, 8388608L), (read.Qos.MaxIops, read.Qos.MaxBytesPerSecond));
        Assert.False(VolumeContext.TryRead(new Dictionary<string, string>(context) { ["maxIops"] = "lots" }, out _, out var problem));
        Assert.Contains("QoS", problem);
    }

    [Theory]
    [InlineData("/var/lib/kubelet/pods/u/volumes/kubernetes.io~csi/pv/mount", true)]
    [InlineData("/var/lib/kubelet", false)]
    [InlineData("/var/lib/kubeletx/a", false)]
    [InlineData("/var/lib/kubelet/a/../../../etc", false)]
    [InlineData("/var/lib/kubelet//a", false)]
    [InlineData("/var/lib/kubelet/a/", false)]
    [InlineData("var/lib/kubelet/a", false)]
    [InlineData("/tmp/csi-mount", false)]
    public void PathsMustBeNormalisedAndInsideTheKubeletDirectory(string path, bool accepted)
    {
        Assert.Equal(accepted, new NodePaths("/var/lib/kubelet/").Check("target_path", path) is null);
    }

    [Fact]
    public void RecordsNameNoCallerTextAndKeepSecretsApartWithMode600()
    {
        var directory = Directory.CreateTempSubdirectory().FullName;
        var store = new StagedVolumeStore(directory);
        var record = new StagedVolumeRecord(
            "../../etc/passwd/vol", "rpc", new Dictionary<string, string> { ["endpoint"] = "tcp://h:1" }, "vol", "/var/lib/kubelet/x",
            StagedAccess.Block, null, [], null, false, 3, 1 << 20, "boot", DateTimeOffset.UnixEpoch);

        store.Write(record, new Dictionary<string, string> { ["token"] = "t0ps3cret" });

        var files = Directory.GetFiles(store.Directory).Select(f => Path.GetFileName(f)).Order().ToArray();
        var key = StagedVolumeStore.KeyOf(record.VolumeId);
        Assert.Equal([key + ".json", key + ".secrets.json"], files);
        Assert.DoesNotContain("t0ps3cret", File.ReadAllText(Path.Combine(store.Directory, key + ".json")));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Path.Combine(store.Directory, key + ".secrets.json")));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(store.Directory));
        Assert.Equal("t0ps3cret", store.ReadSecrets(record.VolumeId)["token"]);
        Assert.Equal(record.StoreParameters["endpoint"], store.TryRead(record.VolumeId)!.StoreParameters["endpoint"]);

        File.WriteAllText(Path.Combine(store.Directory, "damaged.json"), "{");
        var unreadable = new List<string>();
        Assert.Single(store.ReadAll((file, _) => unreadable.Add(file)));
        Assert.Single(unreadable);

        store.Delete(record.VolumeId);
        Assert.Null(store.TryRead(record.VolumeId));
        Assert.Empty(store.ReadSecrets(record.VolumeId));
        Directory.Delete(directory, recursive: true);
    }
}
