namespace UblkCsi.Engine;

/// <summary>ublk feature flags (<c>UBLK_F_*</c>): what GET_FEATURES offers and what a device negotiated.</summary>
[Flags]
public enum UblkFeatures : ulong
{
    None = 0,
    SupportZeroCopy = 1UL << 0,
    UringCmdCompInTask = 1UL << 1,
    NeedGetData = 1UL << 2,
    UserRecovery = 1UL << 3,
    UserRecoveryReissue = 1UL << 4,
    UnprivilegedDev = 1UL << 5,
    CmdIoctlEncode = 1UL << 6,
    UserCopy = 1UL << 7,
    Zoned = 1UL << 8,
    UserRecoveryFailIo = 1UL << 9,
    UpdateSize = 1UL << 10,
    AutoBufReg = 1UL << 11,
    Quiesce = 1UL << 12,
    PerIoDaemon = 1UL << 13,
    BufRegOffDaemon = 1UL << 14,
}

/// <summary>How ublk feature flags read in logs and tool output.</summary>
public static class UblkFeaturesText
{
    /// <summary>
    /// The names of the set flags and the raw value, e.g. "UserCopy, AutoBufReg, bit 15 (0x8880)": a
    /// newer kernel sets bits this engine has no name for, and the enum's own ToString then prints one
    /// bare number, hiding the flags it does know.
    /// </summary>
    public static string Describe(this UblkFeatures flags)
    {
        if (flags == UblkFeatures.None)
        {
            return "none (0x0)";
        }

        var parts = new List<string>();
        for (var bit = 0; bit < 64; bit++)
        {
            var flag = (UblkFeatures)(1UL << bit);
            if ((flags & flag) != 0)
            {
                parts.Add(Enum.IsDefined(flag) ? flag.ToString() : $"bit {bit}");
            }
        }

        return $"{string.Join(", ", parts)} (0x{(ulong)flags:x})";
    }
}

/// <summary>Kernel state of a ublk device.</summary>
public enum UblkDeviceState
{
    /// <summary>Added but not started, or stopped.</summary>
    Dead = 0,

    /// <summary>Serving I/O.</summary>
    Live = 1,

    /// <summary>Its server died; I/O is queued until a new server adopts it (user recovery).</summary>
    Quiesced = 2,

    /// <summary>Its server died and I/O fails until recovery (6.13+ USER_RECOVERY_FAIL_IO).</summary>
    FailIo = 3,
}
