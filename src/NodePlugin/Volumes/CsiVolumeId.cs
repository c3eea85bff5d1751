using System.Text;

namespace UblkCsi.NodePlugin.Volumes;

/// <summary>
/// A CSI volume_id as the controller issues it: <c>&lt;store locator&gt;/&lt;store volume id&gt;</c>
/// (docs/design.md, "Decisions the next pieces build on"). The node needs only the part after the
/// last '/', the ID the store knows; the locator lets the stateless controller find the store again.
/// </summary>
public readonly record struct CsiVolumeId(string Value, string Locator, string StoreVolumeId)
{
    /// <summary>CSI's limit for a volume_id, in bytes.</summary>
    public const int MaxBytes = 128;

    /// <summary>Splits <paramref name="value"/>; false with the reason when it is not of the controller's form.</summary>
    public static bool TryParse(string value, out CsiVolumeId id, out string problem)
    {
        id = default;
        if (string.IsNullOrEmpty(value))
        {
            problem = "volume_id is empty";
            return false;
        }

        if (Encoding.UTF8.GetByteCount(value) > MaxBytes)
        {
            problem = $"volume_id is longer than {MaxBytes} bytes";
            return false;
        }

        var slash = value.LastIndexOf('/');
        if (slash <= 0 || slash == value.Length - 1)
        {
            problem = $"volume_id '{value}' is not of the form <store locator>/<volume id>";
            return false;
        }

        id = new CsiVolumeId(value, value[..slash], value[(slash + 1)..]);
        problem = string.Empty;
        return true;
    }

    public override string ToString() => Value;
}
