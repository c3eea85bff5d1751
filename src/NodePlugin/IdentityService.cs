using Csi.V1;
using Microsoft.Extensions.Logging;
using UblkCsi.Engine;
using Grpc.Core;

namespace UblkCsi.NodePlugin;

/// <summary>
/// csi.v1.Identity for the node plugin. Probe reports ready only when the host can serve ublk
/// devices (ublk_drv loaded, io_uring allowed). A host lacking them is not a broken plugin, so
/// Probe still answers OK with ready=false, as the CSI spec asks of a plugin that is healthy
/// but not yet able to serve; what is missing is logged whenever the answer changes.
/// </summary>
public sealed partial class IdentityService : Identity.IdentityBase
{
    private static readonly ProbeResponse Ready = new() { Ready = true };
    private static readonly ProbeResponse NotReady = new() { Ready = false };

    private readonly GetPluginInfoResponse _info;
    private readonly GetPluginCapabilitiesResponse _capabilities;
    private readonly Func<HostSupportReport> _probeHost;
    private readonly Func<string?> _pluginProblem;
    private readonly ILogger _logger;
    private readonly Lock _reportLock = new();
    private string? _lastProblem = string.Empty;

    /// <summary>Creates the service.</summary>
    /// <param name="driverName">The CSI driver name.</param>
    /// <param name="vendorVersion">The plugin version.</param>
    /// <param name="probeHost">Checks the host's kernel facilities; <see cref="HostSupport.Probe"/> in production.</param>
    /// <param name="logger">Where readiness changes are reported.</param>
    /// <param name="pluginProblem">Why the plugin itself is not ready yet (adopting devices), or null.</param>
    /// <param name="controllerService">Also advertise CONTROLLER_SERVICE (the node-local controller's socket).</param>
    public IdentityService(string driverName, string vendorVersion, Func<HostSupportReport> probeHost, ILogger<IdentityService> logger, Func<string?>? pluginProblem = null, bool controllerService = false)
    {
        _pluginProblem = pluginProblem ?? (() => null);
        _info = new GetPluginInfoResponse { Name = driverName, VendorVersion = vendorVersion };
        _capabilities = new GetPluginCapabilitiesResponse
        {
            Capabilities =
            {
                new PluginCapability
                {
                    Service = new PluginCapability.Types.Service { Type = PluginCapability.Types.Service.Types.Type.VolumeAccessibilityConstraints },
                },
            },
        };
        if (controllerService)
        {
            _capabilities.Capabilities.Insert(0, new PluginCapability
            {
                Service = new PluginCapability.Types.Service { Type = PluginCapability.Types.Service.Types.Type.ControllerService },
            });
        }

        _probeHost = probeHost;
        _logger = logger;
    }

    /// <summary>Driver name and version.</summary>
    public override Task<GetPluginInfoResponse> GetPluginInfo(GetPluginInfoRequest request, ServerCallContext context) => Task.FromResult(_info);

    /// <summary>
    /// Topology: a ublk device exists on the node that created it. The node plugin's own socket has no
    /// controller service (the controller plugin's job); the node-local controller's socket has one.
    /// </summary>
    public override Task<GetPluginCapabilitiesResponse> GetPluginCapabilities(GetPluginCapabilitiesRequest request, ServerCallContext context) =>
        Task.FromResult(_capabilities);

    /// <summary>Ready when the host supports ublk; never an error status for a missing facility.</summary>
    public override Task<ProbeResponse> Probe(ProbeRequest request, ServerCallContext context)
    {
        var problem = _probeHost().Problem ?? _pluginProblem();
        ReportChange(problem);
        return Task.FromResult(problem is null ? Ready : NotReady);
    }

    private void ReportChange(string? problem)
    {
        lock (_reportLock)
        {
            if (problem == _lastProblem)
            {
                return;
            }

            _lastProblem = problem;
        }

        if (problem is null)
        {
            HostReady(_logger);
        }
        else
        {
            HostNotReady(_logger, problem);
        }
    }

    [LoggerMessage(EventId = 200, Level = LogLevel.Warning, Message = "node plugin not ready: {Problem}")]
    private static partial void HostNotReady(ILogger logger, string problem);

    [LoggerMessage(EventId = 201, Level = LogLevel.Information, Message = "node plugin ready: ublk and io_uring are available, earlier volumes adopted")]
    private static partial void HostReady(ILogger logger);
}
