namespace UblkCsi.NodePlugin.Host;

/// <summary>Filesystem tools applied to a staged device.</summary>
public interface IFilesystemTools
{
    /// <summary>The filesystem (or other signature: partition table, LVM, ...) on a device, or null when it is blank.</summary>
    string? Probe(string device);

    /// <summary>Makes a filesystem of <paramref name="fsType"/> on a blank device.</summary>
    void Format(string device, string fsType);

    /// <summary>Grows a mounted filesystem to the size of its device (a no-op when it already fills it).</summary>
    void Grow(string device, string mountPoint, string fsType);

    /// <summary>
    /// Gives group <paramref name="groupId"/> the filesystem root (group-writable, set-gid so new
    /// files inherit it): the CSI volume_mount_group, which kubelet leaves to the driver.
    /// </summary>
    void ApplyGroup(string mountPoint, string groupId);
}

/// <summary>blkid, mkfs.ext4/mkfs.xfs, resize2fs/xfs_growfs.</summary>
public sealed class LinuxFilesystemTools : IFilesystemTools
{
    /// <summary>blkid's exit code when the device has no signature it recognises.</summary>
    private const int BlkidNothingFound = 2;

    /// <inheritdoc />
    public string? Probe(string device)
    {
        // Low-level probing (-p) reads the device itself instead of the blkid cache, and reports
        // partition tables too (PTTYPE), so a partitioned disk is never taken for blank.
        var result = ExternalCommand.Run("blkid", "-p", "-o", "export", "--", device);
        if (result.ExitCode == BlkidNothingFound)
        {
            return null;
        }

        if (result.ExitCode != 0)
        {
            throw new ExternalCommandException($"blkid -p {device}", result.ExitCode, (result.Error + result.Output).Trim());
        }

        string? type = null, partitionTable = null;
        foreach (var line in result.Output.Split('\n'))
        {
            if (line.StartsWith("TYPE=", StringComparison.Ordinal))
            {
                type = line["TYPE=".Length..].Trim();
            }
            else if (line.StartsWith("PTTYPE=", StringComparison.Ordinal))
            {
                partitionTable = "partition table " + line["PTTYPE=".Length..].Trim();
            }
        }

        return type ?? partitionTable ?? "unknown signature";
    }

    /// <inheritdoc />
    public void Format(string device, string fsType)
    {
        switch (fsType)
        {
            case "ext4":
                ExternalCommand.RunChecked("mkfs.ext4", "-q", "-F", "--", device);
                break;
            case "xfs":
                ExternalCommand.RunChecked("mkfs.xfs", "-q", device);
                break;
            default:
                throw new ArgumentException($"unsupported filesystem type '{fsType}'", nameof(fsType));
        }
    }

    /// <inheritdoc />
    public void Grow(string device, string mountPoint, string fsType)
    {
        switch (fsType)
        {
            case "ext4":
                ExternalCommand.RunChecked("resize2fs", device);
                break;
            case "xfs":
                ExternalCommand.RunChecked("xfs_growfs", mountPoint);
                break;
        }
    }

    /// <inheritdoc />
    public void ApplyGroup(string mountPoint, string groupId)
    {
        ExternalCommand.RunChecked("chgrp", "--", groupId, mountPoint);
        ExternalCommand.RunChecked("chmod", "g+rwxs", "--", mountPoint);
    }
}
