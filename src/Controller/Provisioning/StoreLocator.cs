using System.Security.Cryptography;
using System.Text;
using UblkCsi.Stores;

namespace UblkCsi.Controller.Provisioning;

/// <summary>
/// Which store holds a volume, written into its CSI ID so a stateless controller can reopen the store
/// from the ID alone (DeleteVolume, expand, snapshots get nothing else). Form:
/// <c>TYPE[@NODEKEY]:V1,V2,...</c> where the values are the store's location parameters in a fixed order
/// (<see cref="LocationKeys"/>), percent-escaped, trailing empty ones dropped. Only location goes in:
/// tuning parameters (chunk size, cache settings, reflink mode, retries) change nothing about where a
/// volume lives, and leaving them out keeps IDs short and one store one locator.
/// <c>@NODEKEY</c> marks a node-local store: 8 hex digits of SHA-256 of the node ID, enough to refuse a
/// call that reached the wrong node while keeping long node names out of the 128-byte budget.
/// </summary>
/// <example><c>file@3f2a9c1d:/var/lib/ublk-csi</c>, <c>s3:vols,team-a,http://minio.minio:9000,,true</c>, <c>rpc:tcp://10.0.0.5:9400</c></example>
public sealed record StoreLocator(string Type, string? NodeKey, IReadOnlyDictionary<string, string> Location)
{
    /// <summary>The location parameters of each store type, in locator order.</summary>
    public static IReadOnlyDictionary<string, string[]> LocationKeys { get; } = new Dictionary<string, string[]>(StringComparer.Ordinal)
    {
        ["file"] = ["root"],
        ["s3"] = ["bucket", "prefix", "endpoint", "region", "pathStyle"],
        ["rpc"] = ["endpoint"],
        ["memory"] = ["capacity"],
        ["null"] = ["capacity"],
    };

    /// <summary>The locator of the store a StorageClass parameter set (already split from "store") opens.</summary>
    public static StoreLocator From(string type, IReadOnlyDictionary<string, string> storeParameters, string? nodeId)
    {
        var keys = LocationKeys[type];
        var location = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var key in keys)
        {
            if (storeParameters.TryGetValue(key, out var value) && Canonical(type, key, value) is { Length: > 0 } canonical)
            {
                location[key] = canonical;
            }
        }

        return new StoreLocator(type, nodeId is null ? null : NodeKeyOf(nodeId), location);
    }

    /// <summary>Parses a locator; false when it is not one this driver writes.</summary>
    public static bool TryParse(string text, out StoreLocator? locator)
    {
        locator = null;
        var colon = text.IndexOf(':');
        if (colon <= 0)
        {
            return false;
        }

        var head = text[..colon];
        var at = head.IndexOf('@');
        var type = at < 0 ? head : head[..at];
        var nodeKey = at < 0 ? null : head[(at + 1)..];
        if (!LocationKeys.TryGetValue(type, out var keys) || nodeKey is not null && !IsNodeKey(nodeKey))
        {
            return false;
        }

        var values = text[(colon + 1)..].Split(',');
        if (values.Length > keys.Length)
        {
            return false;
        }

        var location = new Dictionary<string, string>(StringComparer.Ordinal);
        for (var i = 0; i < values.Length; i++)
        {
            if (!TryUnescape(values[i], out var value))
            {
                return false;
            }

            if (value.Length > 0)
            {
                location[keys[i]] = value;
            }
        }

        locator = new StoreLocator(type, nodeKey, location);
        return true;
    }

    /// <summary>The node key of a node ID: 8 hex digits of its SHA-256.</summary>
    public static string NodeKeyOf(string nodeId) =>
        Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(nodeId)).AsSpan(0, 4));

    /// <summary>True when the store lives on one node.</summary>
    public bool IsNodeLocal => NodeKey is not null;

    public override string ToString()
    {
        var sb = new StringBuilder(Type);
        if (NodeKey is not null)
        {
            sb.Append('@').Append(NodeKey);
        }

        sb.Append(':');
        var values = LocationKeys[Type].Select(k => Location.TryGetValue(k, out var v) ? Escape(v) : "").ToList();
        while (values.Count > 1 && values[^1].Length == 0)
        {
            values.RemoveAt(values.Count - 1);
        }

        return sb.Append(string.Join(',', values)).ToString();
    }

    /// <summary>
    /// Drops spellings that name the same place differently (defaults, trailing slashes), so one store
    /// has one locator and shows up once in ListVolumes.
    /// </summary>
    private static string Canonical(string type, string key, string value) => (type, key) switch
    {
        ("file", "root") => value.Length > 1 ? value.TrimEnd('/') : value,
        ("s3", "prefix") => value.Trim('/'),
        ("s3", "region") when value == "us-east-1" => "",
        ("s3", "pathStyle") => value.Equals("true", StringComparison.OrdinalIgnoreCase) ? "true" : value.Equals("false", StringComparison.OrdinalIgnoreCase) ? "" : value,
        _ => value,
    };

    private static bool IsNodeKey(string key) => key.Length == 8 && key.All(c => char.IsAsciiDigit(c) || c is >= 'a' and <= 'f');

    private static bool IsPlain(char c) => char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-' or '~' or ':' or '/' or '@' or '+' or '=';

    private static string Escape(string value)
    {
        if (value.All(IsPlain))
        {
            return value;
        }

        var sb = new StringBuilder(value.Length + 8);
        foreach (var b in Encoding.UTF8.GetBytes(value))
        {
            var c = (char)b;
            if (b < 0x80 && IsPlain(c))
            {
                sb.Append(c);
            }
            else
            {
                sb.Append('%').Append(b.ToString("X2", System.Globalization.CultureInfo.InvariantCulture));
            }
        }

        return sb.ToString();
    }

    private static bool TryUnescape(string text, out string value)
    {
        value = "";
        if (!text.All(c => IsPlain(c) || c == '%'))
        {
            return false;
        }

        try
        {
            value = Uri.UnescapeDataString(text);
            return !value.Any(char.IsControl);
        }
        catch (UriFormatException)
        {
            return false;
        }
    }
}
