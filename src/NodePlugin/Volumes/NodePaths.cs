namespace UblkCsi.NodePlugin.Volumes;

/// <summary>
/// Checks the staging and target paths kubelet passes before anything is created or mounted there:
/// absolute, normalised (no '.', '..', empty segments or NUL), and inside the kubelet directory.
/// The last rule keeps every mount this plugin makes where mount propagation carries it to the host
/// (so the plugin never holds the last reference to a filesystem on a device it serves).
/// </summary>
public sealed class NodePaths(string kubeletDirectory)
{
    /// <summary>The kubelet root directory (e.g. /var/lib/kubelet).</summary>
    public string KubeletDirectory { get; } = kubeletDirectory.Length > 1 ? kubeletDirectory.TrimEnd('/') : kubeletDirectory;

    /// <summary>Null when <paramref name="path"/> is acceptable, else why not (naming <paramref name="field"/>).</summary>
    public string? Check(string field, string path)
    {
        if (!IsNormalisedAbsolute(path))
        {
            return $"{field} '{path}' must be an absolute path without '.', '..' or empty segments";
        }

        if (!path.StartsWith(KubeletDirectory + "/", StringComparison.Ordinal))
        {
            return $"{field} '{path}' is outside the kubelet directory {KubeletDirectory} (set --kubelet-dir to kubelet's --root-dir)";
        }

        return null;
    }

    /// <summary>An absolute path with no '.', '..' or empty segments and no NUL.</summary>
    public static bool IsNormalisedAbsolute(string path) =>
        path.Length > 1
        && path[0] == '/'
        && !path.EndsWith('/')
        && !path.Contains('\0', StringComparison.Ordinal)
        && path[1..].Split('/').All(s => s is not ("" or "." or ".."));
}
