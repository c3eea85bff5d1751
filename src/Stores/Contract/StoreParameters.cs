using System.Globalization;

namespace UblkCsi.Stores;

/// <summary>
/// Reads a StorageClass parameter map (or a secrets map) for one store type: typed getters with
/// errors that name the parameter and the allowed values, and a final check that rejects every key
/// nobody asked for. Secret values never appear in messages.
/// </summary>
public sealed class StoreParameters
{
    private readonly IReadOnlyDictionary<string, string> _values;
    private readonly HashSet<string> _known = new(StringComparer.Ordinal);
    private readonly bool _secret;
    private readonly string _what;

    /// <param name="values">The map as received.</param>
    /// <param name="what">How to call the map in messages ("parameters", "secrets").</param>
    /// <param name="secret">True for secrets: values are never quoted.</param>
    public StoreParameters(IReadOnlyDictionary<string, string>? values, string what = "parameters", bool secret = false)
    {
        _values = values ?? new Dictionary<string, string>();
        _what = what;
        _secret = secret;
    }

    /// <summary>The value or null when absent; an empty value counts as absent.</summary>
    public string? Optional(string name)
    {
        _known.Add(name);
        return _values.TryGetValue(name, out var v) && v.Length > 0 ? v : null;
    }

    /// <summary>The value; throws when absent.</summary>
    public string Required(string name, string allowed)
    {
        return Optional(name) ?? throw new StoreParameterException(name, $"is required ({allowed})");
    }

    /// <summary>A true/false value.</summary>
    public bool Boolean(string name, bool defaultValue)
    {
        var v = Optional(name);
        return v switch
        {
            null => defaultValue,
            _ when v.Equals("true", StringComparison.OrdinalIgnoreCase) => true,
            _ when v.Equals("false", StringComparison.OrdinalIgnoreCase) => false,
            _ => throw Invalid(name, v, "allowed: true or false"),
        };
    }

    /// <summary>An integer in [min, max].</summary>
    public int Integer(string name, int defaultValue, int min, int max)
    {
        var v = Optional(name);
        if (v is null)
        {
            return defaultValue;
        }

        if (!int.TryParse(v, NumberStyles.None, CultureInfo.InvariantCulture, out var n) || n < min || n > max)
        {
            throw Invalid(name, v, $"allowed: an integer from {min} to {max}");
        }

        return n;
    }

    /// <summary>A byte size such as 4194304, 4Mi, 4M or 1G (binary multiples) in [min, max].</summary>
    public long Size(string name, long defaultValue, long min, long max, long multipleOf = 1)
    {
        var v = Optional(name);
        if (v is null)
        {
            return defaultValue;
        }

        if (!ByteSize.TryParse(v, out var n) || n < min || n > max || n % multipleOf != 0)
        {
            var multiple = multipleOf > 1 ? $", a multiple of {ByteSize.Format(multipleOf)}" : "";
            var range = max == long.MaxValue ? $"at least {ByteSize.Format(min)}" : $"from {ByteSize.Format(min)} to {ByteSize.Format(max)}";
            throw Invalid(name, v, $"allowed: a size {range}{multiple} (suffixes K, M, G, T, Ki, Mi, Gi, Ti)");
        }

        return n;
    }

    /// <summary>One of a fixed set of words (case-insensitive); returns the canonical spelling.</summary>
    public string Choice(string name, string defaultValue, params string[] allowed)
    {
        var v = Optional(name);
        if (v is null)
        {
            return defaultValue;
        }

        foreach (var a in allowed)
        {
            if (a.Equals(v, StringComparison.OrdinalIgnoreCase))
            {
                return a;
            }
        }

        throw Invalid(name, v, "allowed: " + string.Join(", ", allowed));
    }

    /// <summary>Builds the error for a bad value (quotes the value unless the map is secret).</summary>
    public StoreParameterException Invalid(string name, string value, string allowed)
    {
        return _secret
            ? new StoreParameterException(name, $"invalid value; {allowed}")
            : new StoreParameterException(name, $"invalid value '{value}'; {allowed}");
    }

    /// <summary>Throws for the first key no getter asked for, listing the keys this store accepts.</summary>
    public void RejectUnknown()
    {
        foreach (var key in _values.Keys.Order(StringComparer.Ordinal))
        {
            if (!_known.Contains(key))
            {
                var allowed = _known.Count == 0 ? "none" : string.Join(", ", _known.Order(StringComparer.Ordinal));
                throw new StoreParameterException(key, $"unknown {_what} key; allowed: {allowed}");
            }
        }
    }
}

/// <summary>Parses and prints byte sizes with binary suffixes.</summary>
public static class ByteSize
{
    /// <summary>Accepts digits with an optional suffix K/M/G/T/P, optionally followed by "i" and/or "B" (all binary).</summary>
    public static bool TryParse(string text, out long bytes)
    {
        bytes = 0;
        var s = text.Trim();
        if (s.EndsWith('B') || s.EndsWith('b'))
        {
            s = s[..^1];
        }

        if (s.EndsWith('i'))
        {
            s = s[..^1];
        }

        var shift = 0;
        if (s.Length > 0 && char.IsAsciiLetter(s[^1]))
        {
            shift = char.ToUpperInvariant(s[^1]) switch
            {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                'P' => 50,
                _ => -1,
            };
            s = s[..^1];
        }

        if (shift < 0 || !long.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out var n) || n > (long.MaxValue >> shift))
        {
            return false;
        }

        bytes = n << shift;
        return true;
    }

    /// <summary>Formats with the largest exact binary suffix (4194304 -> "4Mi").</summary>
    public static string Format(long bytes)
    {
        string[] suffixes = ["", "Ki", "Mi", "Gi", "Ti", "Pi"];
        var i = 0;
        while (i < suffixes.Length - 1 && bytes != 0 && bytes % 1024 == 0)
        {
            bytes /= 1024;
            i++;
        }

        return bytes.ToString(CultureInfo.InvariantCulture) + suffixes[i];
    }
}
