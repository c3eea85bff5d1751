using UblkCsi.GrpcHosting.Hosting;
using UblkCsi.Protocol;

namespace UblkCsi.Controller;

/// <summary>The controller's own options (the shared ones are in <see cref="CommonHostOptions"/>).</summary>
/// <param name="DriverName">The CSI driver name reported by GetPluginInfo.</param>
public sealed record ControllerOptions(string DriverName)
{
    /// <summary>Declarations for parsing and --help.</summary>
    public static IReadOnlyList<HostOption> Declarations { get; } =
    [
        new("--driver-name", "DRIVER_NAME", $"CSI driver name (default {CsiDriverName.Default})"),
    ];

    /// <summary>Reads and validates the options.</summary>
    public static ControllerOptions From(HostCommandLine line) =>
        new(line.Parse("--driver-name", CsiDriverName.Default, CsiDriverName.Validate));
}
