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
    public static Task<int> RunAsync(HostInvocation invocation, Func<HostSupportReport>? probeHost = null) => HostRunner.RunAsync(
        Program,
        invocation,
        NodeOptions.Declarations,
        NodeOptions.From,
        options => options.Logging,
        (options, loggerFactory, cancellationToken) => StartAsync(options, loggerFactory, probeHost ?? HostSupport.Probe, cancellationToken));

    private static Task<IRunningHost> StartAsync(NodeOptions options, ILoggerFactory loggerFactory, Func<HostSupportReport> probeHost, CancellationToken cancellationToken)
    {
        Directory.CreateDirectory(options.StateDirectory);
        var version = HostRunner.InformationalVersion(typeof(NodeHost).Assembly);
        return GrpcRunningHost.StartAsync(
            new GrpcServerOptions
            {
                Endpoint = options.Grpc.Endpoint,
                MaxReceiveMessageBytes = options.Grpc.MaxMessageBytes,
                SensitiveFields = new SensitiveFieldPolicy(CsiExtensions.CsiSecret),
            },
            loggerFactory,
            server => server.AddService(new IdentityService(options.DriverName, version, probeHost, loggerFactory.CreateLogger<IdentityService>())),
            cancellationToken);
    }
}
