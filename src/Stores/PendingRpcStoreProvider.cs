using System.Globalization;
using UblkCsi.Engine;

namespace UblkCsi.Stores;

/// <summary>
/// Holds the "rpc" type's place until the remote block-store client exists: specs of the form
/// rpc://HOST:PORT/VOLUME parse and validate, opening them explains that the store is not built in.
/// The rpc store replaces this provider in <see cref="StoreRegistry"/>.
/// </summary>
public sealed class PendingRpcStoreProvider : IStoreProvider
{
    public static readonly PendingRpcStoreProvider Instance = new();

    public string Type => "rpc";

    public IVolumeStore OpenStore(IReadOnlyDictionary<string, string> parameters, IReadOnlyDictionary<string, string> secrets) =>
        throw NotBuilt();

    public StoreSpec ValidateSpec(StoreSpec spec)
    {
        var slash = spec.Location.IndexOf('/');
        var endpoint = slash < 0 ? spec.Location : spec.Location[..slash];
        var colon = endpoint.LastIndexOf(':');
        if (slash < 0 || colon <= 0
            || !int.TryParse(endpoint[(colon + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out var port) || port is < 1 or > 65535)
        {
            throw new StoreParameterException("spec", $"'{spec}' must look like rpc://HOST:PORT/VOLUME with a port from 1 to 65535");
        }

        VolumeIds.Validate(spec.Location[(slash + 1)..], "volume");
        new StoreParameters(spec.Options, "rpc spec options").RejectUnknown();
        return spec;
    }

    public Task<IBlockBackend> OpenSpecAsync(StoreSpec spec, StoreSpecOpenOptions options, CancellationToken cancellationToken) =>
        throw NotBuilt();

    private static StoreException NotBuilt() =>
        new(StoreErrorCode.FailedPrecondition, "the rpc store is not available in this build");
}
