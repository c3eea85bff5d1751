using Csi.V1;
using Microsoft.Extensions.Logging;
using UblkCsi.Controller;
using UblkCsi.Controller.Provisioning;
using UblkCsi.Engine;
using UblkCsi.GrpcHosting;
using UblkCsi.GrpcHosting.Logging;
using UblkCsi.Hosting;
using UblkCsi.Stores.Nbd;

namespace UblkCsi.NodePlugin;

/// <summary>The ublk-csi-node process: CSI Identity and Node services on one endpoint per node, and optionally the node-local controller on a second.</summary>
public static class NodeHost
{
    /// <summary>The program name used in messages and --version.</summary>
    public const string Program = "ublk-csi-node";

    /// <summary>Runs the node plugin until <see cref="HostInvocation.Stop"/>; returns the process exit code.</summary>
    /// <param name="invocation">Arguments, environment, console and stop signal.</param>
    /// <param name="probeHost">Replaces <see cref="HostSupport.Probe"/> (tests); null in production.</param>
    /// <param name="system">Replaces system parts (tests); null in production.</param>
    public static Task<int> RunAsync(HostInvocation invocation, Func<HostSupportReport>? probeHost = null, NodeSystem? system = null) => HostRunner.RunAsync(
        Program,
        invocation,
        NodeOptions.Declarations,
        NodeOptions.From,
        options => options.Logging,
        (options, loggerFactory, cancellationToken) => StartAsync(options, loggerFactory, probeHost ?? HostSupport.Probe, system, cancellationToken));

    /// <summary>
    /// Checks the node and starts adopting the previous process's devices, then serves Identity and
    /// Node, and with --controller-endpoint the node-local controller on a second socket. The runtime
    /// (and the node-local controller's store catalog) is owned by the running host: it is disposed
    /// after both servers stopped (no call in flight), which hands every device over to the next
    /// process instead of deleting it.
    /// </summary>
    private static Task<IRunningHost> StartAsync(NodeOptions options, ILoggerFactory loggerFactory, Func<HostSupportReport> probeHost, NodeSystem? system, CancellationToken cancellationToken)
    {
        NodeRuntime runtime;
        try
        {
            runtime = NodeRuntime.Start(
                new NodeRuntimeSettings(options.DriverName, options.NodeId, options.StateDirectory, options.KubeletDirectory, options.MaxVolumesPerNode, options.DeviceQueues, options.ZeroCopy),
                loggerFactory,
                system);
        }
        catch (InvalidOperationException e)
        {
            throw new HostStartException(e.Message, e);
        }

        var serverOptions = options.Grpc.ToServerOptions(new SensitiveFieldPolicy(CsiExtensions.CsiSecret));
        if (options.Grpc.MetricsAddress is not null)
        {
            // Per-volume I/O metrics beside the gRPC call metrics, read from the meters at each scrape.
            _ = new Metrics.VolumeMetricsExporter(serverOptions.MetricsRegistry, runtime.MetricsSources);
        }

        var catalog = new StoreCatalog();
        // Owned resources are disposed in reverse: nbd clients can still log while the runtime hands devices over.
        var nbdLogs = NbdStoreProvider.UseLoggerFactory(loggerFactory);
        return GrpcRunningHost.StartAsync(Servers(options, serverOptions, runtime, catalog, loggerFactory, probeHost), loggerFactory, cancellationToken, nbdLogs, catalog, runtime);
    }

    /// <summary>
    /// Which services each socket serves. The node socket: Identity and Node under the driver name.
    /// The node-local controller's socket (--controller-endpoint), registered with kubelet under the
    /// local driver name: Identity with CONTROLLER_SERVICE, the Controller in node-local mode (file
    /// volumes pinned to this node) and a Node service over the same volumes that reports the local
    /// driver's topology key. Same limits and secret redaction; only the node socket serves metrics.
    /// </summary>
    private static List<GrpcServerSetup> Servers(
        NodeOptions options, GrpcServerOptions serverOptions, NodeRuntime runtime, StoreCatalog catalog, ILoggerFactory loggerFactory, Func<HostSupportReport> probeHost)
    {
        var version = HostRunner.InformationalVersion(typeof(NodeHost).Assembly);
        List<GrpcServerSetup> servers =
        [
            new(serverOptions, server => server
                .AddService(new IdentityService(options.DriverName, version, probeHost, loggerFactory.CreateLogger<IdentityService>(), () => runtime.NotReadyReason))
                .AddService(runtime.Service)),
        ];
        if (options.ControllerEndpoint is { } endpoint && options.ControllerDriverName is { } localDriverName)
        {
            var controller = new ControllerService(
                new ControllerServiceOptions(localDriverName) { NodeLocalNodeId = options.NodeId },
                catalog,
                loggerFactory.CreateLogger<ControllerService>());
            servers.Add(new(
                new GrpcServerOptions
                {
                    Endpoint = endpoint,
                    MaxReceiveMessageBytes = serverOptions.MaxReceiveMessageBytes,
                    SensitiveFields = serverOptions.SensitiveFields,
                    MetricsRegistry = serverOptions.MetricsRegistry,
                },
                server => server
                    .AddService(new IdentityService(localDriverName, version, probeHost, loggerFactory.CreateLogger<IdentityService>(), () => runtime.NotReadyReason, controllerService: true))
                    .AddService(controller)
                    .AddService(runtime.CreateService(localDriverName))));
        }

        return servers;
    }
}
