using Csi.V1;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using UblkCsi.Controller.Provisioning;
using UblkCsi.Stores;
using RpcType = Csi.V1.ControllerServiceCapability.Types.RPC.Types.Type;

namespace UblkCsi.Controller;

/// <summary>
/// csi.v1.Controller over the stores. Stateless: a volume's CSI ID names its store
/// (<see cref="VolumeHandle"/>, <see cref="StoreLocator"/>) and all metadata, publication records
/// included, lives in the store. Every request is validated before anything is opened or changed;
/// calls on one volume or snapshot are serialised (ABORTED for a concurrent duplicate).
/// The same class serves the central controller and, constructed with
/// <see cref="ControllerServiceOptions.NodeLocalNodeId"/>, the node-local controller in each node plugin.
/// </summary>
public sealed partial class ControllerService : Csi.V1.Controller.ControllerBase
{
    private readonly ControllerServiceOptions _options;
    private readonly StoreCatalog _catalog;
    private readonly ILogger _logger;
    private readonly OperationLocks _locks = new();
    private readonly string? _nodeKey;
    private readonly ControllerGetCapabilitiesResponse _capabilities;

    public ControllerService(ControllerServiceOptions options, StoreCatalog catalog, ILogger<ControllerService> logger)
    {
        _options = options;
        _catalog = catalog;
        _logger = logger;
        _nodeKey = options.NodeLocalNodeId is { } node ? StoreLocator.NodeKeyOf(node) : null;
        _capabilities = BuildCapabilities(IsNodeLocal);
    }

    private bool IsNodeLocal => _nodeKey is not null;

    public override Task<ControllerGetCapabilitiesResponse> ControllerGetCapabilities(ControllerGetCapabilitiesRequest request, ServerCallContext context) =>
        Task.FromResult(_capabilities);

    /// <summary>
    /// The node-local controller needs no attach (its volumes never leave the node), so it leaves out
    /// publishing; everything else is the same.
    /// </summary>
    private static ControllerGetCapabilitiesResponse BuildCapabilities(bool nodeLocal)
    {
        List<RpcType> types =
        [
            RpcType.CreateDeleteVolume, RpcType.CreateDeleteSnapshot, RpcType.ListSnapshots, RpcType.CloneVolume,
            RpcType.ExpandVolume, RpcType.ListVolumes, RpcType.GetCapacity, RpcType.GetVolume, RpcType.VolumeCondition,
            RpcType.SingleNodeMultiWriter, RpcType.ModifyVolume,
        ];
        if (!nodeLocal)
        {
            types.AddRange([RpcType.PublishUnpublishVolume, RpcType.ListVolumesPublishedNodes]);
        }

        var response = new ControllerGetCapabilitiesResponse();
        response.Capabilities.AddRange(types.Select(t => new ControllerServiceCapability { Rpc = new ControllerServiceCapability.Types.RPC { Type = t } }));
        return response;
    }

    /// <summary>
    /// Resolves a CSI ID this service may act on. Null when the text is not an ID this driver issued
    /// (callers answer NOT_FOUND, or success for deletes); FAILED_PRECONDITION when it belongs to
    /// another controller (another node's node-local store, or central vs. node-local).
    /// </summary>
    private (VolumeHandle Handle, StoreLocator Locator)? Resolve(string id)
    {
        if (!VolumeHandle.TryParse(id, out var handle) || !StoreLocator.TryParse(handle.Locator, out var locator)
            || !_options.EffectiveStoreTypes.Contains(locator!.Type))
        {
            return null;
        }

        if (locator.NodeKey != _nodeKey)
        {
            throw CsiErrors.FailedPrecondition(locator.IsNodeLocal
                ? IsNodeLocal ? $"'{id}' lives on another node; its node plugin serves it" : $"'{id}' is node-local; the node plugin of its node serves it"
                : $"'{id}' is served by the central controller, not a node plugin");
        }

        return (handle, locator);
    }

    private static void Require(string value, string field)
    {
        if (string.IsNullOrEmpty(value))
        {
            throw CsiErrors.InvalidArgument($"{field} is required");
        }
    }

    private IVolumeStore OpenLocation(StoreLocator locator, IReadOnlyDictionary<string, string> secrets)
    {
        try
        {
            return _catalog.OpenLocation(locator, secrets);
        }
        catch (StoreException e) when (e.Code == StoreErrorCode.InvalidArgument && secrets.Count > 0)
        {
            throw CsiErrors.InvalidArgument($"secrets for store {locator}: {e.Message}");
        }
        catch (StoreException e)
        {
            // The ID was ours, so its location was valid when the volume was created: the store is
            // not usable now (a root unmounted, an endpoint gone), which a retry may cure.
            var code = e.Code == StoreErrorCode.InvalidArgument ? StatusCode.FailedPrecondition : StoreStatusCodes.ToStatusCode(e.Code);
            throw new RpcException(new Status(code, $"store {locator} cannot be opened: {e.Message}"));
        }
    }

    /// <summary>Runs store calls, turning store failures into the statuses their codes name.</summary>
    private static async Task<T> Store<T>(Func<Task<T>> call)
    {
        try
        {
            return await call().ConfigureAwait(false);
        }
        catch (StoreException e)
        {
            throw CsiErrors.FromStore(e);
        }
    }

    private static string Join(StoreLocator locator, string storeId, string field)
    {
        var id = new VolumeHandle(locator.ToString(), storeId).ToString();
        if (System.Text.Encoding.UTF8.GetByteCount(id) > VolumeHandle.MaxBytes)
        {
            throw CsiErrors.InvalidArgument(
                $"the {field} '{id}' would exceed CSI's {VolumeHandle.MaxBytes} bytes; shorten the store's location parameters ({string.Join(", ", StoreLocator.LocationKeys[locator.Type])})");
        }

        return id;
    }

    private static IReadOnlyDictionary<string, string> Map(Google.Protobuf.Collections.MapField<string, string> map) => map;
}
