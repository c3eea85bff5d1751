namespace UblkCsi.Stores;

/// <summary>
/// A CSI volume or snapshot ID as the driver hands it out: <c>&lt;store locator&gt;/&lt;store ID&gt;</c>.
/// The locator says which store holds the object (the controller is stateless, so the ID itself must
/// let it reopen the store); the store ID is the store's own <see cref="VolumeIds"/> ID. The node plugin
/// needs only <see cref="StoreId"/>: it opens the store from the volume context. The locator may contain
/// '/', a store ID never does, so the split is at the last '/'.
/// </summary>
/// <param name="Locator">Which store (see the controller's StoreLocator); never empty.</param>
/// <param name="StoreId">The volume's or snapshot's ID inside that store.</param>
public readonly record struct VolumeHandle(string Locator, string StoreId)
{
    /// <summary>CSI's size limit for volume and snapshot IDs, in bytes.</summary>
    public const int MaxBytes = 128;

    /// <summary>Splits a handle; false when it is not one this driver could have produced.</summary>
    public static bool TryParse(string? text, out VolumeHandle handle)
    {
        handle = default;
        if (string.IsNullOrEmpty(text) || text.Length > MaxBytes)
        {
            return false;
        }

        var slash = text.LastIndexOf('/');
        if (slash <= 0 || !VolumeIds.IsValidId(text[(slash + 1)..]))
        {
            return false;
        }

        foreach (var c in text)
        {
            if (c is <= ' ' or > '~')
            {
                return false;
            }
        }

        handle = new VolumeHandle(text[..slash], text[(slash + 1)..]);
        return true;
    }

    /// <summary>The handle as CSI carries it.</summary>
    public override string ToString() => Locator + "/" + StoreId;
}
