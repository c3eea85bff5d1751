namespace UblkCsi.NodePlugin.Host;

/// <summary>Mount operations of the node, behind an interface so the staging logic is testable without root.</summary>
public interface IMounter
{
    /// <summary>The current mount table of this process.</summary>
    IReadOnlyList<MountEntry> ReadMounts();

    /// <summary>Mounts a filesystem: <c>mount -t fsType -o options source target</c>.</summary>
    void Mount(string source, string target, string fsType, IReadOnlyList<string> options);

    /// <summary>Bind-mounts <paramref name="source"/> (directory or device node) onto <paramref name="target"/>, then remounts it read-only when asked.</summary>
    void BindMount(string source, string target, bool readOnly);

    /// <summary>Unmounts the topmost mount at <paramref name="target"/>.</summary>
    void Unmount(string target);
}

/// <summary>The util-linux mount and umount tools.</summary>
public sealed class LinuxMounter : IMounter
{
    /// <inheritdoc />
    public IReadOnlyList<MountEntry> ReadMounts() => MountTable.Read();

    /// <inheritdoc />
    public void Mount(string source, string target, string fsType, IReadOnlyList<string> options)
    {
        var arguments = new List<string> { "-t", fsType };
        if (options.Count > 0)
        {
            arguments.Add("-o");
            arguments.Add(string.Join(',', options));
        }

        // "--" so that no path is ever read as an option.
        arguments.Add("--");
        arguments.Add(source);
        arguments.Add(target);
        ExternalCommand.RunChecked("mount", arguments);
    }

    /// <inheritdoc />
    public void BindMount(string source, string target, bool readOnly)
    {
        ExternalCommand.RunChecked("mount", "--bind", "--", source, target);
        if (readOnly)
        {
            // A bind mount takes the source's flags; read-only needs a second, remounting step.
            try
            {
                ExternalCommand.RunChecked("mount", "-o", "remount,bind,ro", "--", target);
            }
            catch
            {
                ExternalCommand.Run("umount", "--", target);
                throw;
            }
        }
    }

    /// <inheritdoc />
    public void Unmount(string target) => ExternalCommand.RunChecked("umount", "--", target);
}
