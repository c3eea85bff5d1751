using UblkCsi.GrpcHosting;
using UblkCsi.Hosting;
using UblkCsi.Protocol;

namespace UblkCsi.Controller;

/// <summary>The controller's options.</summary>
/// <param name="Grpc">Endpoint and message size.</param>
/// <param name="Logging">Log level and format.</param>
/// <param name="DriverName">The CSI driver name reported by GetPluginInfo.</param>
public sealed record ControllerOptions(GrpcHostOptions Grpc, LogOptions Logging, string DriverName)
{
    /// <summary>Declarations for parsing and --help.</summary>
    public static IReadOnlyList<HostOption> Declarations { get; } =
    [
        .. GrpcHostOptions.Declarations,
        .. LogOptions.Declarations,
        new("--driver-name", "DRIVER_NAME", $"CSI driver name (default {CsiDriverName.Default})"),
    ];

    /// <summary>Reads and validates the options.</summary>
    public static ControllerOptions From(HostCommandLine line) => new(
        GrpcHostOptions.From(line),
        LogOptions.From(line),
        line.Parse("--driver-name", CsiDriverName.Default, CsiDriverName.Validate));
}
