using UblkCsi.Engine;

namespace UblkCsi.Stores.Files;

/// <summary>
/// The "file" store type. StorageClass parameters: <c>root</c> (required: absolute path of an
/// existing directory), <c>reflink</c> (auto | always | never, default auto), <c>directIo</c>
/// (auto | on | off, default auto). No secrets.
/// Spec: <c>file:PATH[?direct-io=auto|on|off&amp;writer-wait=SECONDS]</c> names one image file (no
/// store root, no snapshots); <c>writer-wait</c> (0-600, default 30) bounds the wait for another
/// writer of the image to let go (<see cref="FileVolume.OpenAsync"/>).
/// </summary>
public sealed class FileStoreProvider : IStoreProvider
{
    public const string TypeName = "file";

    public const string WriterWaitOption = "writer-wait";

    public static readonly FileStoreProvider Instance = new();

    public string Type => TypeName;

    public IVolumeStore OpenStore(IReadOnlyDictionary<string, string> parameters, IReadOnlyDictionary<string, string> secrets)
    {
        var p = new StoreParameters(parameters);
        var root = p.Required("root", "an absolute path of an existing directory");
        var reflink = p.Choice("reflink", "auto", "auto", "always", "never") switch
        {
            "always" => ReflinkMode.Always,
            "never" => ReflinkMode.Never,
            _ => ReflinkMode.Auto,
        };
        var directIo = ParseDirectIo(p, "directIo");
        p.RejectUnknown();
        new StoreParameters(secrets, "secrets", secret: true).RejectUnknown();
        return new FileStore(new FileStoreOptions(root, reflink, directIo));
    }

    public StoreSpec ValidateSpec(StoreSpec spec)
    {
        var path = spec.Location;
        if (path.Length == 0 || path.Contains('\0', StringComparison.Ordinal))
        {
            throw new StoreParameterException("spec", "file: needs a path to an image file, e.g. file:/var/lib/images/vol1.img");
        }

        var full = Path.GetFullPath(path);
        if (Directory.Exists(full))
        {
            throw new StoreParameterException("spec", $"'{full}' is a directory; file: names an image file");
        }

        ParseSpecOptions(spec);
        return spec.With(full);
    }

    /// <summary>The spec's options, checked whole: at validation, and again at open, which may serve a spec another process validated.</summary>
    private static (DirectIoMode DirectIo, TimeSpan WriterWait) ParseSpecOptions(StoreSpec spec)
    {
        var options = new StoreParameters(spec.Options, "spec options");
        var parsed = (ParseDirectIo(options, "direct-io"), WriterWait(options));
        options.RejectUnknown();
        return parsed;
    }

    private static TimeSpan WriterWait(StoreParameters p) =>
        TimeSpan.FromSeconds(p.Integer(WriterWaitOption, (int)FileStoreOptions.DefaultWriterLockWait.TotalSeconds, 0, 600));

    private static DirectIoMode ParseDirectIo(StoreParameters p, string name) => p.Choice(name, "auto", "auto", "on", "off") switch
    {
        "on" => DirectIoMode.On,
        "off" => DirectIoMode.Off,
        _ => DirectIoMode.Auto,
    };

    public async Task<IBlockBackend> OpenSpecAsync(StoreSpec spec, StoreSpecOpenOptions options, CancellationToken cancellationToken)
    {
        var path = spec.Location;
        // Before anything is created: a bad option must leave no new image behind.
        var (directIo, writerWait) = ParseSpecOptions(spec);
        if (!File.Exists(path))
        {
            var requested = options.SizeBytes ?? throw new StoreParameterException("size", $"'{path}' does not exist; give a size to create it");
            var size = CreateRules.ValidateSize(requested, "size");
            using (var created = File.OpenHandle(path, FileMode.CreateNew, FileAccess.ReadWrite))
            {
                RandomAccess.SetLength(created, size);
            }
        }

        var length = new FileInfo(path).Length;
        if (length == 0 || length % StoreLimits.IoAlignment != 0)
        {
            throw new StoreParameterException("spec", $"'{path}' is {length} bytes; an image must be a non-empty multiple of {StoreLimits.IoAlignment} bytes");
        }

        if (options.SizeBytes is { } wanted && StoreLimits.RoundUpSize(wanted) != length && wanted != length)
        {
            throw new StoreParameterException("size", $"'{path}' is {length} bytes but {wanted} was requested; resize the file or omit the size");
        }

        return await FileVolume.OpenAsync(path, path, length, options.ReadOnly, directIo, writerWait, cancellationToken).ConfigureAwait(false);
    }
}
