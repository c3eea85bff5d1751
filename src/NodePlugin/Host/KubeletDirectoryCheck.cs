namespace UblkCsi.NodePlugin.Host;

/// <summary>
/// Refuses to run with a kubelet directory that is not a shared mount in this process's mount
/// namespace. Mounts the plugin makes there must propagate to the host (where kubelet and the pods
/// see them), and a ublk server must never hold the last reference to a filesystem on its own
/// device: when the plugin's mount namespace died with such a mount, the kernel would unmount and
/// flush it, waiting on I/O only the dying server could serve (libublk-rs#50).
/// </summary>
public static class KubeletDirectoryCheck
{
    /// <summary>Null when <paramref name="kubeletDirectory"/> is usable, else what is wrong and how to fix it.</summary>
    public static string? Problem(string kubeletDirectory, IReadOnlyList<MountEntry> mounts)
    {
        if (!Directory.Exists(kubeletDirectory))
        {
            return $"the kubelet directory {kubeletDirectory} does not exist; mount the host's kubelet directory into the plugin container (hostPath, mountPropagation: Bidirectional) or set --kubelet-dir to kubelet's --root-dir";
        }

        var mount = MountTable.Containing(mounts, kubeletDirectory);
        if (mount is null || !mount.Shared)
        {
            var where = mount is null ? "no mount" : $"the mount at {mount.MountPoint}";
            return $"the kubelet directory {kubeletDirectory} is not a shared mount in this plugin's mount namespace ({where} has private or slave propagation): "
                + "volumes mounted here would not reach kubelet and the pods, and this process could end up holding the last reference to a filesystem on a device it serves. "
                + "Fix: mount it into the node plugin container with mountPropagation: Bidirectional (privileged), or on a host run 'mount --make-rshared " + (mount?.MountPoint ?? kubeletDirectory) + "'";
        }

        return null;
    }
}
