using System.Security.Cryptography;
using System.Text;

namespace UblkCsi.Stores;

/// <summary>
/// Volume and snapshot IDs. An ID is safe to use as a file or object name on its own: 1 to 64
/// characters from [A-Za-z0-9._-], starting with a letter or digit, never containing "..".
/// A name that already satisfies those rules is its own ID (CSI names such as "pvc-&lt;uuid&gt;"
/// stay readable); any other name maps to "h-" plus 32 hex digits of its SHA-256.
/// </summary>
public static class VolumeIds
{
    public const int MaxIdLength = 64;

    /// <summary>Longest accepted name, in UTF-16 code units (CSI names are at most 128 bytes in practice).</summary>
    public const int MaxNameLength = 256;

    private const string HashPrefix = "h-";

    /// <summary>The ID for a volume or snapshot name.</summary>
    /// <exception cref="StoreParameterException">The name is empty, too long or has control characters.</exception>
    public static string FromName(string name, string parameterName = "name")
    {
        ValidateName(name, parameterName);
        if (IsValidId(name) && !name.StartsWith(HashPrefix, StringComparison.Ordinal))
        {
            return name;
        }

        var digest = SHA256.HashData(Encoding.UTF8.GetBytes(name));
        return HashPrefix + Convert.ToHexStringLower(digest.AsSpan(0, 16));
    }

    /// <summary>Checks a name given by a caller.</summary>
    public static void ValidateName(string? name, string parameterName = "name")
    {
        if (string.IsNullOrEmpty(name))
        {
            throw new StoreParameterException(parameterName, "must not be empty");
        }

        if (name.Length > MaxNameLength)
        {
            throw new StoreParameterException(parameterName, $"must be at most {MaxNameLength} characters, got {name.Length}");
        }

        foreach (var c in name)
        {
            if (char.IsControl(c))
            {
                throw new StoreParameterException(parameterName, "must not contain control characters (including NUL)");
            }
        }
    }

    /// <summary>Checks an ID before it becomes part of a path or object key.</summary>
    /// <exception cref="StoreParameterException">Names <paramref name="parameterName"/> and the allowed form.</exception>
    public static void Validate(string? id, string parameterName = "volumeId")
    {
        if (!IsValidId(id))
        {
            throw new StoreParameterException(
                parameterName,
                $"must be 1 to {MaxIdLength} characters from [A-Za-z0-9._-], start with a letter or digit and not contain '..'");
        }
    }

    /// <summary>True when <paramref name="id"/> has the ID form.</summary>
    public static bool IsValidId(string? id)
    {
        if (string.IsNullOrEmpty(id) || id.Length > MaxIdLength || !char.IsAsciiLetterOrDigit(id[0]) || id.Contains("..", StringComparison.Ordinal))
        {
            return false;
        }

        foreach (var c in id)
        {
            if (!(char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-'))
            {
                return false;
            }
        }

        return true;
    }
}
