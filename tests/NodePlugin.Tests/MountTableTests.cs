using UblkCsi.NodePlugin.Host;

namespace UblkCsi.NodePlugin.Tests;

public sealed class MountTableTests
{
    private static readonly string[] Sample =
    [
        "27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw",
        "40 27 0:40 / /var/lib/kubelet rw,relatime shared:20 - tmpfs tmpfs rw",
        "41 27 0:41 / /srv/private rw,relatime - tmpfs tmpfs rw",
        "50 40 259:0 / /var/lib/kubelet/plugins/kubernetes.io/csi/d/abc/globalmount rw,relatime shared:21 - ext4 /dev/ublkb0 rw",
        "51 40 0:6 /ublkb1 /var/lib/kubelet/pods/u/volumes/kubernetes.io~csi/pv\\0401/mount ro,relatime shared:22 - devtmpfs udev rw",
    ];

    [Fact]
    public void ParsesSourcesPropagationAndEscapes()
    {
        var mounts = MountTable.Parse(Sample);

        Assert.Equal(5, mounts.Count);
        var device = MountTable.At(mounts, "/var/lib/kubelet/pods/u/volumes/kubernetes.io~csi/pv 1/mount");
        Assert.NotNull(device);
        Assert.Equal(("/ublkb1", "devtmpfs", true), (device.Root, device.FsType, device.ReadOnly));
        Assert.Equal("/dev/ublkb0", MountTable.At(mounts, "/var/lib/kubelet/plugins/kubernetes.io/csi/d/abc/globalmount")?.Source);
        Assert.False(MountTable.At(mounts, "/srv/private")!.Shared);
    }

    [Fact]
    public void KubeletDirectoryMustBeShared()
    {
        var mounts = MountTable.Parse(Sample);
        var shared = Directory.CreateTempSubdirectory().FullName;

        Assert.Null(KubeletDirectoryCheck.Problem(shared, MountTable.Parse(["1 0 8:1 / / rw shared:1 - ext4 /dev/sda rw"])));
        var problem = KubeletDirectoryCheck.Problem(shared, MountTable.Parse(["1 0 8:1 / / rw - ext4 /dev/sda rw"]));
        Assert.NotNull(problem);
        Assert.Contains("not a shared mount", problem);
        Assert.Contains("mountPropagation: Bidirectional", problem);
        Assert.Contains("does not exist", KubeletDirectoryCheck.Problem("/nonexistent/kubelet", mounts));
        Directory.Delete(shared);
    }
}
