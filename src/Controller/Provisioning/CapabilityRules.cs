using Csi.V1;
using Mode = Csi.V1.VolumeCapability.Types.AccessMode.Types.Mode;

namespace UblkCsi.Controller.Provisioning;

/// <summary>
/// Which volume capabilities the driver serves. A ublk volume is a block device with one writer node
/// (the stores do not arbitrate between writers), so every single-node mode is supported, raw block
/// or mounted with a filesystem the node plugin makes; multi-node modes are not.
/// </summary>
public static class CapabilityRules
{
    /// <summary>Filesystems the node plugin formats and mounts ("" = the node's default, ext4).</summary>
    public static readonly IReadOnlyList<string> FsTypes = ["", "ext4", "xfs"];

    private static readonly Mode[] SingleNodeModes =
        [Mode.SingleNodeWriter, Mode.SingleNodeReaderOnly, Mode.SingleNodeSingleWriter, Mode.SingleNodeMultiWriter];

    /// <summary>Checks the form of a capability list (INVALID_ARGUMENT names the field).</summary>
    public static void ValidateForm(IReadOnlyCollection<VolumeCapability> capabilities, string field)
    {
        if (capabilities.Count == 0)
        {
            throw CsiErrors.InvalidArgument($"{field} must not be empty");
        }

        foreach (var capability in capabilities)
        {
            ValidateForm(capability, field);
        }
    }

    /// <summary>Checks the form of one capability.</summary>
    public static void ValidateForm(VolumeCapability? capability, string field)
    {
        if (capability is null)
        {
            throw CsiErrors.InvalidArgument($"{field} is required");
        }

        if (capability.AccessTypeCase == VolumeCapability.AccessTypeOneofCase.None)
        {
            throw CsiErrors.InvalidArgument($"{field}: access_type must be block or mount");
        }

        if (capability.AccessMode is null || capability.AccessMode.Mode == Mode.Unknown)
        {
            throw CsiErrors.InvalidArgument($"{field}: access_mode is required");
        }
    }

    /// <summary>Why the driver cannot serve a capability, or null when it can.</summary>
    public static string? Unsupported(VolumeCapability capability)
    {
        if (!SingleNodeModes.Contains(capability.AccessMode.Mode))
        {
            return $"access mode {capability.AccessMode.Mode} is not supported; allowed: {string.Join(", ", SingleNodeModes)} (a volume has one writer node)";
        }

        if (capability.AccessTypeCase == VolumeCapability.AccessTypeOneofCase.Mount && !FsTypes.Contains(capability.Mount.FsType))
        {
            return $"fs_type '{capability.Mount.FsType}' is not supported; allowed: ext4, xfs";
        }

        return null;
    }

    /// <summary>The first reason a list cannot be served, or null.</summary>
    public static string? Unsupported(IEnumerable<VolumeCapability> capabilities) =>
        capabilities.Select(Unsupported).FirstOrDefault(reason => reason is not null);

    /// <summary>True for the modes whose volume may be published to one node only.</summary>
    public static bool IsSingleNode(Mode mode) => SingleNodeModes.Contains(mode);

    /// <summary>True when publishing with this capability can only read.</summary>
    public static bool IsReadOnlyMode(Mode mode) => mode is Mode.SingleNodeReaderOnly or Mode.MultiNodeReaderOnly;
}
