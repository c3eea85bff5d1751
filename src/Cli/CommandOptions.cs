using System.Globalization;

namespace UblkCsi.Cli;

/// <summary>Option parsing shared by every command: values, whole numbers and sizes, with errors that name the option and the allowed values.</summary>
public static class CommandOptions
{
    /// <summary>The value after option <c>args[i]</c>; advances <paramref name="i"/> past it.</summary>
    public static string Value(string[] args, ref int i)
    {
        if (i + 1 >= args.Length)
        {
            throw new CliException($"{args[i]} needs a value", 2);
        }

        return args[++i];
    }

    /// <summary>A whole number within [<paramref name="min"/>, <paramref name="max"/>]; the error names the option and the range.</summary>
    public static int ParseInt(string option, string text, int min, int max)
    {
        if (!int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var value) || value < min || value > max)
        {
            throw new CliException($"{option} '{text}' is invalid: use a whole number from {min} to {max}", 2);
        }

        return value;
    }

    /// <summary>
    /// A size in the one grammar of the product (<see cref="Stores.ByteSize"/>, shared with StorageClass
    /// parameters and bench-stores): "4096", "64K", "64Ki", "512MiB", "1G" (powers of 1024), a
    /// positive multiple of 512 bytes.
    /// </summary>
    public static long ParseSize(string option, string text, long max = long.MaxValue)
    {
        if (!Stores.ByteSize.TryParse(text, out var bytes) || bytes <= 0 || bytes > max || bytes % 512 != 0)
        {
            var limit = max == long.MaxValue ? string.Empty : $" up to {max} bytes";
            throw new CliException($"{option} '{text}' is invalid: use a positive multiple of 512 bytes{limit}, with an optional K, M, G or T suffix, optionally followed by i or iB (all powers of 1024; e.g. 64M, 1Gi)", 2);
        }

        return bytes;
    }

    /// <summary>
    /// The one positional device ID of detach and recover: a second positional argument or an unknown
    /// option is an error, as is an ID outside the kernel's range.
    /// </summary>
    public static int DeviceId(string argument, int? alreadyGiven, string usage)
    {
        if (alreadyGiven != null || argument.StartsWith('-'))
        {
            throw new CliException($"unexpected argument '{argument}'\n{usage}", 2);
        }

        return ParseInt("ID", argument, 0, (1 << 20) - 1);
    }
}
