using Csi.V1;
using Microsoft.Extensions.Logging;
using UblkCsi.Controller.Provisioning;
using UblkCsi.GrpcHosting;
using UblkCsi.GrpcHosting.Logging;
using UblkCsi.Hosting;
using UblkCsi.Stores.Nbd;

namespace UblkCsi.Controller;

/// <summary>The ublk-csi-controller process: CSI Identity and Controller services on one endpoint.</summary>
public static class ControllerHost
{
    /// <summary>The program name used in messages and --version.</summary>
    public const string Program = "ublk-csi-controller";

    /// <summary>Runs the controller until <see cref="HostInvocation.Stop"/>; returns the process exit code.</summary>
    public static Task<int> RunAsync(HostInvocation invocation) => HostRunner.RunAsync(
        Program,
        invocation,
        ControllerOptions.Declarations,
        ControllerOptions.From,
        options => options.Logging,
        StartAsync);

    private static Task<IRunningHost> StartAsync(ControllerOptions options, ILoggerFactory loggerFactory, CancellationToken cancellationToken)
    {
        var version = HostRunner.InformationalVersion(typeof(ControllerHost).Assembly);
        var catalog = new StoreCatalog();
        var controller = new ControllerService(
            new ControllerServiceOptions(options.DriverName) { KnownNodes = options.KnownNodes },
            catalog,
            loggerFactory.CreateLogger<ControllerService>());
        return GrpcRunningHost.StartAsync(
            options.Grpc.ToServerOptions(new SensitiveFieldPolicy(CsiExtensions.CsiSecret)),
            loggerFactory,
            server => server.AddService(new IdentityService(options.DriverName, version)).AddService(controller),
            cancellationToken,
            NbdStoreProvider.UseLoggerFactory(loggerFactory),
            catalog);
    }
}
