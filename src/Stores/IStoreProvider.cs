using UblkCsi.Engine;

namespace UblkCsi.Stores;

/// <summary>
/// One store type: opens its control path from a StorageClass parameter map plus secrets, and opens a
/// single volume from a one-string <see cref="StoreSpec"/> for the operator tool. Registered in
/// <see cref="StoreRegistry"/>.
/// </summary>
public interface IStoreProvider
{
    /// <summary>The type name used in StorageClass parameters and as the spec scheme ("file", "s3").</summary>
    string Type { get; }

    /// <summary>
    /// Opens the store. <paramref name="parameters"/> holds only this store's keys (the controller
    /// removes its own first); unknown keys and invalid values throw <see cref="StoreParameterException"/>.
    /// <paramref name="secrets"/> are never logged or quoted in errors.
    /// </summary>
    IVolumeStore OpenStore(IReadOnlyDictionary<string, string> parameters, IReadOnlyDictionary<string, string> secrets);

    /// <summary>
    /// Checks a parsed spec of this type (location and options) without touching anything and returns
    /// its canonical form (e.g. an absolute path), the one persisted as a description.
    /// </summary>
    /// <exception cref="StoreParameterException">Names the option or "spec" and what is allowed.</exception>
    StoreSpec ValidateSpec(StoreSpec spec);

    /// <summary>Opens (or with a size, creates when absent) the one volume a spec names.</summary>
    Task<IBlockBackend> OpenSpecAsync(StoreSpec spec, StoreSpecOpenOptions options, CancellationToken cancellationToken);
}

/// <summary>How <see cref="StoreSpec.OpenAsync"/> opens a spec's volume.</summary>
/// <param name="SizeBytes">
/// Size for a volume that does not exist yet (required for null and memory). For an existing volume it
/// must be absent or equal to the volume's size: nothing is resized implicitly.
/// </param>
/// <param name="ReadOnly">Open for reads only.</param>
public sealed record StoreSpecOpenOptions(long? SizeBytes = null, bool ReadOnly = false);
