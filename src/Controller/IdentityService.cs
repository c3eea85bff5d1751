using Csi.V1;
using Grpc.Core;

namespace UblkCsi.Controller;

/// <summary>
/// csi.v1.Identity for the controller plugin. The controller is stateless (volume metadata lives
/// in the stores), so once it serves it is ready. Responses are built once and reused.
/// </summary>
public sealed class IdentityService : Identity.IdentityBase
{
    private readonly GetPluginInfoResponse _info;
    private readonly GetPluginCapabilitiesResponse _capabilities;
    private readonly ProbeResponse _ready = new() { Ready = true };

    /// <summary>Creates the service for <paramref name="driverName"/> at <paramref name="vendorVersion"/>.</summary>
    public IdentityService(string driverName, string vendorVersion)
    {
        _info = new GetPluginInfoResponse { Name = driverName, VendorVersion = vendorVersion };
        _capabilities = new GetPluginCapabilitiesResponse
        {
            Capabilities =
            {
                Service(PluginCapability.Types.Service.Types.Type.ControllerService),
                Service(PluginCapability.Types.Service.Types.Type.VolumeAccessibilityConstraints),
            },
        };
    }

    /// <summary>Driver name and version.</summary>
    public override Task<GetPluginInfoResponse> GetPluginInfo(GetPluginInfoRequest request, ServerCallContext context) => Task.FromResult(_info);

    /// <summary>The controller service, with topology: volumes of node-local stores are reachable from one node only.</summary>
    public override Task<GetPluginCapabilitiesResponse> GetPluginCapabilities(GetPluginCapabilitiesRequest request, ServerCallContext context) =>
        Task.FromResult(_capabilities);

    /// <summary>Always ready: the controller holds no state that needs initializing.</summary>
    public override Task<ProbeResponse> Probe(ProbeRequest request, ServerCallContext context) => Task.FromResult(_ready);

    private static PluginCapability Service(PluginCapability.Types.Service.Types.Type type) =>
        new() { Service = new PluginCapability.Types.Service { Type = type } };
}
