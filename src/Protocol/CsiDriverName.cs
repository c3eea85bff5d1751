namespace UblkCsi.Protocol;

/// <summary>
/// The CSI rule for GetPluginInfoResponse.name: at most 63 characters, domain-name style,
/// starting and ending with an alphanumeric, with alphanumerics, '-' and '.' between.
/// </summary>
public static class CsiDriverName
{
    /// <summary>The driver name used when none is configured.</summary>
    public const string Default = "ublk.csi.storage";

    /// <summary>Returns <paramref name="name"/> or throws <see cref="FormatException"/> saying which rule it breaks.</summary>
    public static string Validate(string name)
    {
        if (name.Length is 0 or > 63)
        {
            throw new FormatException($"'{name}' must be 1 to 63 characters long");
        }

        if (!char.IsAsciiLetterOrDigit(name[0]) || !char.IsAsciiLetterOrDigit(name[^1]))
        {
            throw new FormatException($"'{name}' must start and end with a letter or digit");
        }

        if (!name.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '.'))
        {
            throw new FormatException($"'{name}' may contain only letters, digits, '-' and '.'");
        }

        return name;
    }
}
