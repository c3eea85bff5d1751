namespace UblkCsi.NodePlugin.Host;

/// <summary>The kernel's random ID of the current boot: ublk devices never outlive it.</summary>
public static class BootId
{
    private const string BootIdPath = "/proc/sys/kernel/random/boot_id";

    /// <summary>This boot's ID.</summary>
    public static string Read() => File.ReadAllText(BootIdPath).Trim();
}
