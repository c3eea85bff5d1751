using System.Text;
using UblkCsi.Engine;

namespace UblkCsi.Stores;

/// <summary>
/// A one-string description of a single volume, for the operator tool and for recovery records:
/// <list type="bullet">
/// <item><c>null</c>: reads zeros, drops writes.</item>
/// <item><c>memory</c>: in-process memory, gone when the process exits.</item>
/// <item><c>file:PATH</c>: one sparse image file (created when absent and a size is given).</item>
/// <item><c>s3://BUCKET[/PREFIX...]/VOLUME?endpoint=URL&amp;region=R&amp;path-style=true</c>: an s3-store
/// volume; credentials come from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (never from the spec).</item>
/// <item><c>rpc://HOST:PORT/VOLUME</c>: a volume of a remote block-store server.</item>
/// <item><c>nbd://HOST[:PORT]/EXPORT</c>, <c>nbd+unix:///EXPORT?socket=/PATH</c>: an export of an NBD server.</item>
/// </list>
/// <see cref="ToString"/> (also <see cref="Description"/>) is the canonical form: it contains no
/// secrets, so it may be persisted and parsed again to reopen the same volume.
/// </summary>
public sealed class StoreSpec
{
    private StoreSpec(string type, string location, IReadOnlyDictionary<string, string> options)
    {
        Type = type;
        Location = location;
        Options = options;
    }

    /// <summary>Store type: "null", "memory", "file", "s3", "rpc", "nbd", "nbd+unix".</summary>
    public string Type { get; }

    /// <summary>
    /// The type-specific part: the image path for file, "BUCKET/PREFIX/VOLUME" for s3,
    /// "HOST:PORT/VOLUME" for rpc, empty for null and memory.
    /// </summary>
    public string Location { get; }

    /// <summary>The query options (s3, rpc), keys as written (kebab-case).</summary>
    public IReadOnlyDictionary<string, string> Options { get; }

    /// <summary>The canonical, secret-free form; safe to log and persist.</summary>
    public string Description => ToString();

    /// <summary>Parses and validates a spec.</summary>
    /// <exception cref="StoreParameterException">ParameterName "spec" for the overall form, else the option at fault.</exception>
    public static StoreSpec Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var s = text.Trim();
        StoreSpec spec;
        if (s is "null" or "memory")
        {
            spec = new StoreSpec(s, "", new Dictionary<string, string>());
        }
        else if (s.StartsWith("file:", StringComparison.Ordinal))
        {
            var rest = s["file:".Length..];
            var query = rest.IndexOf('?');
            spec = new StoreSpec("file", query < 0 ? rest : rest[..query], query < 0 ? new Dictionary<string, string>() : ParseQuery(rest[(query + 1)..]));
        }
        else if (s.IndexOf("://", StringComparison.Ordinal) is > 0 and var schemeEnd)
        {
            var rest = s[(schemeEnd + 3)..];
            var query = rest.IndexOf('?');
            var location = query < 0 ? rest : rest[..query];
            var options = query < 0 ? new Dictionary<string, string>() : ParseQuery(rest[(query + 1)..]);
            spec = new StoreSpec(s[..schemeEnd], location, options);
        }
        else
        {
            throw new StoreParameterException("spec", $"'{text}' is not a store spec; allowed forms: {Forms}");
        }

        if (!StoreRegistry.Types.Contains(spec.Type))
        {
            throw new StoreParameterException("spec", $"unknown store type '{spec.Type}'; allowed forms: {Forms}");
        }

        return StoreRegistry.Get(spec.Type).ValidateSpec(spec);
    }

    /// <summary>The accepted spec forms, for usage texts.</summary>
    public const string Forms = "null, memory, file:PATH[?direct-io=auto|on|off], s3://BUCKET/[PREFIX/]VOLUME?endpoint=URL&region=NAME&path-style=true, rpc://HOST:PORT/VOLUME, nbd://HOST[:PORT]/EXPORT, nbd+unix:///EXPORT?socket=/PATH";

    /// <summary>
    /// Opens the volume this spec names. The result owns everything it opened (clients, stores):
    /// dispose it when done.
    /// </summary>
    public Task<IBlockBackend> OpenAsync(StoreSpecOpenOptions? options = null, CancellationToken cancellationToken = default) =>
        StoreRegistry.Get(Type).OpenSpecAsync(this, options ?? new StoreSpecOpenOptions(), cancellationToken);

    /// <summary>A spec with a different location or options (used by providers to canonicalise).</summary>
    public StoreSpec With(string location, IReadOnlyDictionary<string, string>? options = null) =>
        new(Type, location, options ?? Options);

    public override string ToString()
    {
        var sb = new StringBuilder(Type);
        switch (Type)
        {
            case "null" or "memory":
                break;
            case "file":
                sb.Append(':').Append(Location);
                AppendQuery(sb, Options);
                break;
            default:
                sb.Append("://").Append(Location);
                AppendQuery(sb, Options);
                break;
        }

        return sb.ToString();
    }

    private static void AppendQuery(StringBuilder sb, IReadOnlyDictionary<string, string> options)
    {
        var separator = '?';
        foreach (var (key, value) in options.OrderBy(o => o.Key, StringComparer.Ordinal))
        {
            sb.Append(separator).Append(Uri.EscapeDataString(key)).Append('=').Append(Uri.EscapeDataString(value));
            separator = '&';
        }
    }

    private static Dictionary<string, string> ParseQuery(string query)
    {
        var options = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var pair in query.Split('&', StringSplitOptions.RemoveEmptyEntries))
        {
            var eq = pair.IndexOf('=');
            if (eq <= 0)
            {
                throw new StoreParameterException("spec", $"query element '{pair}' is not KEY=VALUE");
            }

            var key = Uri.UnescapeDataString(pair[..eq]);
            if (!options.TryAdd(key, Uri.UnescapeDataString(pair[(eq + 1)..])))
            {
                throw new StoreParameterException(key, "given more than once");
            }
        }

        return options;
    }
}
