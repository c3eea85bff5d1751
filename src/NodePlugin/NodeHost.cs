using Csi.V1;
using Microsoft.Extensions.Logging;
using UblkCsi.Engine;
using UblkCsi.GrpcHosting;
using UblkCsi.GrpcHosting.Logging;
using UblkCsi.Hosting;

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
    public static Task<int> RunAsync(HostInvocation invocation, Func<HostSupportReport>? probeHost = null, NodeSystem? system = null) => HostRunner.RunAsync(
        Program,
        invocation,
        NodeOptions.Declarations,
        NodeOptions.From,
        options => options.Logging,
        (options, loggerFactory, cancellationToken) => StartAsync(options, loggerFactory, probeHost ?? HostSupport.Probe, system, cancellationToken));

    /// <summary>
    /// Checks the node and starts adopting the previous process's devices, then serves Identity and
    /// Node. The runtime is owned by the running host: it is disposed after the server stopped (no
    /// call in flight), which hands every device over to the next process instead of deleting it.
    /// </summary>
    private static Task<IRunningHost> StartAsync(NodeOptions options, ILoggerFactory loggerFactory, Func<HostSupportReport> probeHost, NodeSystem? system, CancellationToken cancellationToken)
    {
        NodeRuntime runtime;
        try
        {
            runtime = NodeRuntime.Start(
                new NodeRuntimeSettings(options.DriverName, options.NodeId, options.StateDirectory, options.KubeletDirectory, options.MaxVolumesPerNode, options.DeviceQueues),
                loggerFactory,
                system);
        }
        catch (InvalidOperationException e)
        {
            throw new HostStartException(e.Message, e);
        }

        var version = HostRunner.InformationalVersion(typeof(NodeHost).Assembly);
        var serverOptions = options.Grpc.ToServerOptions(new SensitiveFieldPolicy(CsiExtensions.CsiSecret));
        if (options.Grpc.MetricsAddress is not null)
        {
            // Per-volume I/O metrics beside the gRPC call metrics, read from the meters at each scrape.
            _ = new Metrics.VolumeMetricsExporter(serverOptions.MetricsRegistry, runtime.MetricsSources);
        }

        return GrpcRunningHost.StartAsync(
            serverOptions,
            loggerFactory,
            server => server
                .AddService(new IdentityService(options.DriverName, version, probeHost, loggerFactory.CreateLogger<IdentityService>(), () => runtime.NotReadyReason))
                .AddService(runtime.Service),
            cancellationToken,
            runtime);
    }
}
