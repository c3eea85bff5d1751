using System.Globalization;

namespace UblkCsi.GrpcHosting.Wire;

/// <summary>
/// The grpc-timeout header: at most 8 ASCII digits followed by a unit, H (hours), M (minutes),
/// S (seconds), m (milliseconds), u (microseconds) or n (nanoseconds).
/// </summary>
internal static class GrpcTimeout
{
    private const int MaxDigits = 8;

    public static bool TryParse(ReadOnlySpan<char> value, out TimeSpan timeout)
    {
        timeout = default;
        if (value.Length < 2 || value.Length > MaxDigits + 1)
        {
            return false;
        }

        long amount = 0;
        foreach (var c in value[..^1])
        {
            if (c is < '0' or > '9')
            {
                return false;
            }

            amount = (amount * 10) + (c - '0');
        }

        // 99,999,999 hours is within TimeSpan's range, so no unit can overflow.
        timeout = value[^1] switch
        {
            'H' => TimeSpan.FromHours(amount),
            'M' => TimeSpan.FromMinutes(amount),
            'S' => TimeSpan.FromSeconds(amount),
            'm' => TimeSpan.FromMilliseconds(amount),
            'u' => TimeSpan.FromTicks(amount * 10),
            'n' => TimeSpan.FromTicks(amount / 100),
            _ => TimeSpan.MinValue,
        };
        return timeout != TimeSpan.MinValue;
    }

    /// <summary>Formats a timeout with the finest unit that fits in 8 digits.</summary>
    public static string Format(TimeSpan timeout)
    {
        if (timeout <= TimeSpan.Zero)
        {
            return "1n";
        }

        const long Limit = 99_999_999;
        var micros = timeout.Ticks / 10;
        if (micros <= Limit)
        {
            return Math.Max(micros, 1).ToString(CultureInfo.InvariantCulture) + "u";
        }

        var millis = (long)Math.Ceiling(timeout.TotalMilliseconds);
        if (millis <= Limit)
        {
            return millis.ToString(CultureInfo.InvariantCulture) + "m";
        }

        var seconds = (long)Math.Ceiling(timeout.TotalSeconds);
        if (seconds <= Limit)
        {
            return seconds.ToString(CultureInfo.InvariantCulture) + "S";
        }

        var minutes = (long)Math.Ceiling(timeout.TotalMinutes);
        if (minutes <= Limit)
        {
            return minutes.ToString(CultureInfo.InvariantCulture) + "M";
        }

        return Math.Min((long)Math.Ceiling(timeout.TotalHours), Limit).ToString(CultureInfo.InvariantCulture) + "H";
    }
}
