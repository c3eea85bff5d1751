using UblkCsi.NodePlugin.State;
using UblkCsi.NodePlugin.Volumes;

namespace UblkCsi.NodePlugin.Tests;

/// <summary>The small types the node service builds on: IDs, contexts, paths, records.</summary>
public sealed class VolumePiecesTests
{
    [Theory]
    [InlineData("abc/vol1", "abc", "vol1")]
    [InlineData("a/b/pvc-1", "a/b", "pvc-1")]
    public void VolumeIdSplitsAtTheLastSlash(string value, string locator, string storeId)
    {
        Assert.True(CsiVolumeId.TryParse(value, out var id, out _));
        Assert.Equal((locator, storeId), (id.Locator, id.StoreVolumeId));
    }

    [Theory]
    [InlineData("")]
    [InlineData("vol1")]
    [InlineData("/vol1")]
    [InlineData("abc/")]
    public void MalformedVolumeIdsSayWhy(string value)
    {
        Assert.False(CsiVolumeId.TryParse(value, out _, out var problem));
        Assert.NotEmpty(problem);
        Assert.False(CsiVolumeId.TryParse(new string('a', 120) + "/" + new string('b', 10), out _, out var tooLong));
        Assert.Contains("128 bytes", tooLong);
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
