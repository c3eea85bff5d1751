using UblkCsi.NodePlugin.Host;

namespace UblkCsi.NodePlugin.Tests;

/// <summary>
/// The real mount and filesystem tools on a loop device of this host (root needed, as for the node
/// plugin): what blkid says about a blank device, mkfs, mount, read-only bind, growfs, unmount.
/// </summary>
public sealed class LinuxToolsTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("ublk-node-tools").FullName;
    private readonly List<string> _loops = [];

    [Theory]
    [InlineData("ext4")]
    [InlineData("xfs")]
    public void BlankDeviceIsFormattedOnceMountedBoundReadOnlyAndGrown(string fsType)
    {
        var image = Path.Combine(_directory, "disk.img");
        using (var file = File.Create(image))
        {
            file.SetLength(320L << 20);
        }

        var device = Attach(image);
        var tools = new LinuxFilesystemTools();
        var mounter = new LinuxMounter();

        Assert.Null(tools.Probe(device));
        tools.Format(device, fsType);
        Assert.Equal(fsType, tools.Probe(device));

        var staging = Directory.CreateDirectory(Path.Combine(_directory, "globalmount")).FullName;
        var target = Directory.CreateDirectory(Path.Combine(_directory, "target")).FullName;
        mounter.Mount(device, staging, fsType, fsType == "xfs" ? ["noatime", "nouuid"] : ["noatime"]);
        try
        {
            mounter.BindMount(staging, target, readOnly: true);
            var mounts = mounter.ReadMounts();
            var staged = MountTable.At(mounts, staging);
            var bound = MountTable.At(mounts, target);
            Assert.NotNull(staged);
            Assert.NotNull(bound);
            Assert.Equal((device, fsType), (staged.Source, staged.FsType));
            Assert.Equal(device, bound.Source);
            Assert.True(bound.ReadOnly);
            Assert.Contains("noatime", staged.Options);
            Assert.Contains("Read-only", Assert.Throws<IOException>(() => File.WriteAllText(Path.Combine(target, "x"), "x")).Message);

            tools.Grow(device, staging, fsType);
            mounter.Unmount(target);
            Assert.Null(MountTable.At(mounter.ReadMounts(), target));
        }
        finally
        {
            ExternalCommand.Run("umount", target);
            mounter.Unmount(staging);
        }

        Assert.Null(MountTable.At(mounter.ReadMounts(), staging));
    }

    [Fact]
    public void ATableWithAPartitionIsNotBlank()
    {
        var image = Path.Combine(_directory, "parted.img");
        using (var file = File.Create(image))
        {
            file.SetLength(16L << 20);

            // A DOS partition table with one Linux partition from sector 2048 to the end.
            var mbr = new byte[512];
            mbr[446 + 4] = 0x83;
            BitConverter.GetBytes(2048u).CopyTo(mbr, 446 + 8);
            BitConverter.GetBytes((uint)((16 << 20) / 512 - 2048)).CopyTo(mbr, 446 + 12);
            mbr[510] = 0x55;
            mbr[511] = 0xAA;
            file.Write(mbr);
        }

        Assert.Equal("partition table dos", new LinuxFilesystemTools().Probe(Attach(image)));
    }

    public void Dispose()
    {
        foreach (var loop in _loops)
        {
            ExternalCommand.Run("losetup", "-d", loop);
        }

        Directory.Delete(_directory, recursive: true);
    }

    private string Attach(string image)
    {
        var loop = ExternalCommand.RunChecked("losetup", "-f", "--show", image).Trim();
        _loops.Add(loop);
        return loop;
    }
}
