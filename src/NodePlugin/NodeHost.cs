using Csi.V1;
using Microsoft.Extensions.Logging;
using UblkCsi.Engine;
using UblkCsi.GrpcHosting;
using UblkCsi.GrpcHosting.Hosting;
using UblkCsi.GrpcHosting.Logging;

namespace UblkCsi.NodePlugin;

/// <summary>The ublk-csi-node process: CSI Identity and Node services on one endpoint, per node.</summary>
public static class NodeHost
{
    /// <summary>The program name used in messages and --version.</summary>
    public const string Program = "ublk-csi-node";

    /// <summary>Runs the node plugin until <see cref="HostInvocation.Stop"/>; returns the process exit code.</summary>
    /// <param name="invocation">Arguments, environment, console and stop signal.</param>
    /// <param name="probeHost">Replaces <see cref="HostSupport.Probe"/> (tests); null in production.</param>
    /// <param name="system">Replaces system parts (tests); null in production.</param>
    public static async Task<int> RunAsync(HostInvocation invocation, Func<HostSupportReport>? probeHost = null, NodeSystem? system = null)
    {
        NodeRuntime? runtime = null;
        try
        {
            return await GrpcHostRunner.RunAsync(
                Program,
                invocation,
                NodeOptions.Declarations,
                NodeOptions.From,
                common => new GrpcServerOptions
                {
                    Endpoint = common.Endpoint,
                    MaxReceiveMessageBytes = common.MaxMessageBytes,
                    SensitiveFields = new SensitiveFieldPolicy(CsiExtensions.CsiSecret),
                },
                (options, server, loggerFactory) => runtime = RegisterServices(options, server, loggerFactory, probeHost ?? HostSupport.Probe, system));
        }
        finally
        {
            // After the server stopped (no call in flight): hand the devices over, never delete them.
            if (runtime is not null)
            {
                await runtime.DisposeAsync();
            }
        }
    }

    /// <summary>
    /// Checks the node, starts adopting the previous process's devices and adds the CSI services.
    /// Throws <see cref="InvalidOperationException"/> (the runner's "cannot start") when misconfigured.
    /// </summary>
    private static NodeRuntime RegisterServices(NodeOptions options, GrpcServer server, ILoggerFactory loggerFactory, Func<HostSupportReport> probeHost, NodeSystem? system)
    {
        var runtime = NodeRuntime.Start(
            new NodeRuntimeSettings(options.DriverName, options.NodeId, options.StateDirectory, options.KubeletDirectory, options.MaxVolumesPerNode),
            loggerFactory,
            system);
        var version = GrpcHostRunner.InformationalVersion(typeof(NodeHost).Assembly);
        server.AddService(
            CsiServices.Identity,
            new IdentityService(options.DriverName, version, probeHost, loggerFactory.CreateLogger<IdentityService>(), () => runtime.NotReadyReason));
        server.AddService(CsiServices.Node, new LegacyHosting.LegacyNodeBinding(runtime.Service));
        return runtime;
    }
}
