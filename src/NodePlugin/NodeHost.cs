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
    public static Task<int> RunAsync(HostInvocation invocation, Func<HostSupportReport>? probeHost = null) => GrpcHostRunner.RunAsync(
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
        (options, server, loggerFactory) => RegisterServices(options, server, loggerFactory, probeHost ?? HostSupport.Probe));

    /// <summary>
    /// Prepares the state directory and adds the CSI services. The Node service joins here the
    /// same way as Identity: <c>server.AddService(CsiServices.Node, new NodeService(...))</c>.
    /// </summary>
    private static void RegisterServices(NodeOptions options, GrpcServer server, ILoggerFactory loggerFactory, Func<HostSupportReport> probeHost)
    {
        Directory.CreateDirectory(options.StateDirectory);
        var version = GrpcHostRunner.InformationalVersion(typeof(NodeHost).Assembly);
        server.AddService(
            CsiServices.Identity,
            new IdentityService(options.DriverName, version, probeHost, loggerFactory.CreateLogger<IdentityService>()));
    }
}
