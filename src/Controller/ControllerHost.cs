using Csi.V1;
using Microsoft.Extensions.Logging;
using UblkCsi.GrpcHosting;
using UblkCsi.GrpcHosting.Hosting;
using UblkCsi.GrpcHosting.Logging;

namespace UblkCsi.Controller;

/// <summary>The ublk-csi-controller process: CSI Identity and Controller services on one endpoint.</summary>
public static class ControllerHost
{
    /// <summary>The program name used in messages and --version.</summary>
    public const string Program = "ublk-csi-controller";

    /// <summary>Runs the controller until <see cref="HostInvocation.Stop"/>; returns the process exit code.</summary>
    public static Task<int> RunAsync(HostInvocation invocation) => GrpcHostRunner.RunAsync(
        Program,
        invocation,
        ControllerOptions.Declarations,
        ControllerOptions.From,
        common => new GrpcServerOptions
        {
            Endpoint = common.Endpoint,
            MaxReceiveMessageBytes = common.MaxMessageBytes,
            SensitiveFields = new SensitiveFieldPolicy(CsiExtensions.CsiSecret),
        },
        RegisterServices);

    /// <summary>
    /// Adds the CSI services. The Controller service joins here the same way as Identity:
    /// <c>server.AddService(CsiServices.Controller, new ControllerService(...), "unimplemented", ...)</c>.
    /// </summary>
    private static void RegisterServices(ControllerOptions options, GrpcServer server, ILoggerFactory loggerFactory)
    {
        var version = GrpcHostRunner.InformationalVersion(typeof(ControllerHost).Assembly);
        server.AddService(CsiServices.Identity, new IdentityService(options.DriverName, version));
    }
}
