namespace UblkCsi.NodePlugin.Host;

/// <summary>One line of /proc/self/mountinfo.</summary>
/// <param name="MajorMinor">The st_dev of the mounted filesystem ("259:0").</param>
/// <param name="Root">The path inside the source that is mounted ("/" or, for a bind of a device node, "/ublkb0").</param>
/// <param name="MountPoint">Where it is mounted, unescaped.</param>
/// <param name="Options">Per-mount options ("rw,relatime").</param>
/// <param name="Shared">The mount is in a shared peer group (propagation "shared").</param>
/// <param name="FsType">The filesystem type.</param>
/// <param name="Source">The mount source ("/dev/ublkb0", "devtmpfs").</param>
public sealed record MountEntry(string MajorMinor, string Root, string MountPoint, string Options, bool Shared, string FsType, string Source)
{
    /// <summary>Mounted read-only.</summary>
    public bool ReadOnly => Options.Split(',').Contains("ro");
}

/// <summary>Reads the calling process's mount table (/proc/self/mountinfo).</summary>
public static class MountTable
{
    /// <summary>The path of this process's mount table.</summary>
    public const string SelfMountInfo = "/proc/self/mountinfo";

    /// <summary>Every mount, in mount order (later entries stack over earlier ones).</summary>
    public static IReadOnlyList<MountEntry> Read(string path = SelfMountInfo) => Parse(File.ReadAllLines(path));

    /// <summary>Parses mountinfo lines; malformed lines are skipped.</summary>
    public static IReadOnlyList<MountEntry> Parse(IEnumerable<string> lines)
    {
        var entries = new List<MountEntry>();
        foreach (var line in lines)
        {
            // id parent major:minor root mountpoint options [optional fields...] - fstype source superoptions
            var fields = line.Split(' ');
            var separator = Array.IndexOf(fields, "-");
            if (fields.Length < 7 || separator < 6 || separator + 2 >= fields.Length)
            {
                continue;
            }

            var shared = false;
            for (var i = 6; i < separator; i++)
            {
                shared |= fields[i].StartsWith("shared:", StringComparison.Ordinal);
            }

            entries.Add(new MountEntry(
                fields[2], Unescape(fields[3]), Unescape(fields[4]), fields[5], shared, fields[separator + 1], Unescape(fields[separator + 2])));
        }

        return entries;
    }

    /// <summary>The topmost mount exactly at <paramref name="path"/>, or null.</summary>
    public static MountEntry? At(IReadOnlyList<MountEntry> mounts, string path)
    {
        for (var i = mounts.Count - 1; i >= 0; i--)
        {
            if (mounts[i].MountPoint == path)
            {
                return mounts[i];
            }
        }

        return null;
    }

    /// <summary>The topmost mount whose mount point contains <paramref name="path"/> (the filesystem it lies on).</summary>
    public static MountEntry? Containing(IReadOnlyList<MountEntry> mounts, string path)
    {
        MountEntry? best = null;
        for (var i = mounts.Count - 1; i >= 0; i--)
        {
            var point = mounts[i].MountPoint;
            var contains = point == "/" || path == point || path.StartsWith(point + "/", StringComparison.Ordinal);
            if (contains && (best is null || point.Length > best.MountPoint.Length))
            {
                best = mounts[i];
            }
        }

        return best;
    }

    // mountinfo escapes space, tab, newline and backslash as \ooo (octal).
    private static string Unescape(string field)
    {
        if (!field.Contains('\\', StringComparison.Ordinal))
        {
            return field;
        }

        var sb = new System.Text.StringBuilder(field.Length);
        for (var i = 0; i < field.Length; i++)
        {
            if (field[i] == '\\' && i + 3 < field.Length
                && IsOctal(field[i + 1]) && IsOctal(field[i + 2]) && IsOctal(field[i + 3]))
            {
                sb.Append((char)(((field[i + 1] - '0') << 6) | ((field[i + 2] - '0') << 3) | (field[i + 3] - '0')));
                i += 3;
            }
            else
            {
                sb.Append(field[i]);
            }
        }

        return sb.ToString();
    }

    private static bool IsOctal(char c) => c is >= '0' and <= '7';
}
