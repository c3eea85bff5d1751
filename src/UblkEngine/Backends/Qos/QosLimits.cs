using System.Globalization;

namespace UblkCsi.Engine.Backends.Qos;

/// <summary>
/// A volume's I/O limits. Null means unlimited. IOPS count reads and writes (discard and
/// write-zeroes count as writes without bytes; flushes are free). A volume may run above its
/// limits for <see cref="BurstSeconds"/> worth of saved credit after being idle.
/// </summary>
public sealed record QosLimits
{
    /// <summary>The StorageClass / VolumeAttributesClass parameter names, in documentation order.</summary>
    public static readonly IReadOnlyList<string> ParameterNames =
    [
        "maxIops", "maxBytesPerSecond", "maxReadIops", "maxWriteIops", "maxReadBytesPerSecond", "maxWriteBytesPerSecond", "burstSeconds",
    ];

    /// <summary>No limits.</summary>
    public static QosLimits Unlimited { get; } = new();

    public long? MaxIops { get; init; }

    public long? MaxBytesPerSecond { get; init; }

    public long? MaxReadIops { get; init; }

    public long? MaxWriteIops { get; init; }

    public long? MaxReadBytesPerSecond { get; init; }

    public long? MaxWriteBytesPerSecond { get; init; }

    /// <summary>Seconds of saved credit a volume may spend above its limits. Default 1.</summary>
    public double BurstSeconds { get; init; } = 1;

    /// <summary>True when no limit is set.</summary>
    public bool IsUnlimited =>
        MaxIops is null && MaxBytesPerSecond is null && MaxReadIops is null && MaxWriteIops is null
        && MaxReadBytesPerSecond is null && MaxWriteBytesPerSecond is null;

    /// <summary>True when <paramref name="key"/> is one of <see cref="ParameterNames"/>.</summary>
    public static bool IsParameter(string key) => ParameterNames.Contains(key, StringComparer.Ordinal);

    /// <summary>
    /// Reads the QoS keys of a parameter map (other keys are ignored). Throws <see cref="ArgumentException"/>
    /// whose <see cref="ArgumentException.ParamName"/> is the parameter at fault and whose message says what is allowed.
    /// </summary>
    public static QosLimits Parse(IReadOnlyDictionary<string, string> parameters)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        return new QosLimits
        {
            MaxIops = Rate(parameters, "maxIops", 1_000_000_000),
            MaxBytesPerSecond = Rate(parameters, "maxBytesPerSecond", long.MaxValue / 4),
            MaxReadIops = Rate(parameters, "maxReadIops", 1_000_000_000),
            MaxWriteIops = Rate(parameters, "maxWriteIops", 1_000_000_000),
            MaxReadBytesPerSecond = Rate(parameters, "maxReadBytesPerSecond", long.MaxValue / 4),
            MaxWriteBytesPerSecond = Rate(parameters, "maxWriteBytesPerSecond", long.MaxValue / 4),
            BurstSeconds = Burst(parameters),
        };
    }

    /// <summary>The limits as parameters (only those set), the inverse of <see cref="Parse"/>.</summary>
    public IReadOnlyDictionary<string, string> ToParameters()
    {
        var map = new SortedDictionary<string, string>(StringComparer.Ordinal);
        void Add(string key, long? value)
        {
            if (value is { } v)
            {
                map[key] = v.ToString(CultureInfo.InvariantCulture);
            }
        }

        Add("maxIops", MaxIops);
        Add("maxBytesPerSecond", MaxBytesPerSecond);
        Add("maxReadIops", MaxReadIops);
        Add("maxWriteIops", MaxWriteIops);
        Add("maxReadBytesPerSecond", MaxReadBytesPerSecond);
        Add("maxWriteBytesPerSecond", MaxWriteBytesPerSecond);
        if (!IsUnlimited)
        {
            map["burstSeconds"] = BurstSeconds.ToString(CultureInfo.InvariantCulture);
        }

        return map;
    }

    private static long? Rate(IReadOnlyDictionary<string, string> parameters, string key, long max)
    {
        if (!parameters.TryGetValue(key, out var text))
        {
            return null;
        }

        if (!long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var value) || value < 1 || value > max)
        {
            throw new ArgumentException($"parameter '{key}': '{text}' is not allowed; use a whole number from 1 to {max} (omit the key for no limit)", key);
        }

        return value;
    }

    private static double Burst(IReadOnlyDictionary<string, string> parameters)
    {
        const string Key = "burstSeconds";
        if (!parameters.TryGetValue(Key, out var text))
        {
            return 1;
        }

        if (!double.TryParse(text, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var value) || value is < 0 or > 3600)
        {
            throw new ArgumentException($"parameter '{Key}': '{text}' is not allowed; use seconds from 0 to 3600 (decimals allowed)", Key);
        }

        return value;
    }
}
