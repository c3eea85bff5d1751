namespace UblkCsi.Hosting;

/// <summary>
/// Option values from the command line (<c>--name value</c> or <c>--name=value</c>), falling back
/// to environment variables, then to defaults. Unknown or repeated options are errors.
/// </summary>
public sealed class HostCommandLine
{
    private readonly Dictionary<string, string> _values = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _sources = new(StringComparer.Ordinal);
    private readonly IReadOnlyDictionary<string, HostOption> _options;

    private HostCommandLine(IReadOnlyDictionary<string, HostOption> options) => _options = options;

    /// <summary>Parses <paramref name="args"/> against <paramref name="options"/>; throws <see cref="HostOptionException"/>.</summary>
    public static HostCommandLine Parse(IReadOnlyList<string> args, IReadOnlyDictionary<string, string?> environment, IEnumerable<HostOption> options)
    {
        var known = options.ToDictionary(o => o.Name, StringComparer.Ordinal);
        var line = new HostCommandLine(known);
        for (var i = 0; i < args.Count; i++)
        {
            var arg = args[i];
            var equals = arg.IndexOf('=', StringComparison.Ordinal);
            var name = equals > 0 ? arg[..equals] : arg;
            if (!known.TryGetValue(name, out var option))
            {
                throw new HostOptionException(arg, $"unknown option (known: {string.Join(", ", known.Keys)})");
            }

            string value;
            if (option.IsFlag)
            {
                if (equals > 0)
                {
                    throw new HostOptionException(name, "takes no value");
                }

                value = "true";
            }
            else if (equals > 0)
            {
                value = arg[(equals + 1)..];
            }
            else if (i + 1 < args.Count && !args[i + 1].StartsWith("--", StringComparison.Ordinal))
            {
                value = args[++i];
            }
            else
            {
                throw new HostOptionException(name, "needs a value");
            }

            if (!line._values.TryAdd(name, value))
            {
                throw new HostOptionException(name, "given more than once");
            }

            line._sources[name] = name;
        }

        foreach (var option in known.Values)
        {
            if (!line._values.ContainsKey(option.Name) && option.EnvironmentVariable is { } variable
                && environment.TryGetValue(variable, out var fromEnvironment) && !string.IsNullOrEmpty(fromEnvironment))
            {
                line._values[option.Name] = fromEnvironment;
                line._sources[option.Name] = variable;
            }
        }

        return line;
    }

    /// <summary>True when a flag option was given.</summary>
    public bool Has(string option) => _values.ContainsKey(Known(option));

    /// <summary>The value given on the command line or in the environment, or <paramref name="defaultValue"/>.</summary>
    public string? Get(string option, string? defaultValue = null) => _values.GetValueOrDefault(Known(option), defaultValue!);

    /// <summary>The value, or an error naming the option and its environment variable when neither was given.</summary>
    public string Require(string option)
    {
        var value = Get(option);
        if (!string.IsNullOrWhiteSpace(value))
        {
            return value;
        }

        var variable = _options[option].EnvironmentVariable;
        throw new HostOptionException(option, variable is null ? "is required" : $"is required (or set {variable})");
    }

    /// <summary>Parses a value, wrapping any failure in an error that names the option and where its value came from.</summary>
    public T Parse<T>(string option, string defaultValue, Func<string, T> parse)
    {
        var value = Get(option, defaultValue)!;
        try
        {
            return parse(value);
        }
        catch (Exception e) when (e is FormatException or ArgumentException or OverflowException)
        {
            var source = _sources.TryGetValue(option, out var from) && from != option ? $" (from {from})" : string.Empty;
            throw new HostOptionException(option + source, e.Message);
        }
    }

    /// <summary>Usage text: one line per option with its environment variable.</summary>
    public static string Usage(string program, IEnumerable<HostOption> options) =>
        $"usage: {program} [options]\n" + string.Join('\n', options.Select(o =>
            $"  {(o.IsFlag ? o.Name : o.Name + " VALUE"),-26} {o.Description}{(o.EnvironmentVariable is null ? string.Empty : $" [env {o.EnvironmentVariable}]")}"));

    private string Known(string option) =>
        _options.ContainsKey(option) ? option : throw new ArgumentException($"option {option} was not declared", nameof(option));
}
