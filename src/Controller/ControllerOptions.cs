using UblkCsi.GrpcHosting;
using UblkCsi.Hosting;
using UblkCsi.Protocol;

namespace UblkCsi.Controller;

/// <summary>The controller's options.</summary>
/// <param name="Grpc">Endpoint and message size.</param>
/// <param name="Logging">Log level and format.</param>
/// <param name="DriverName">The CSI driver name reported by GetPluginInfo.</param>
/// <param name="KnownNodes">Node IDs ControllerPublishVolume accepts; null accepts any (the attacher names real nodes).</param>
public sealed record ControllerOptions(GrpcHostOptions Grpc, LogOptions Logging, string DriverName, IReadOnlySet<string>? KnownNodes = null)
{
    /// <summary>Declarations for parsing and --help.</summary>
    public static IReadOnlyList<HostOption> Declarations { get; } =
    [
        .. GrpcHostOptions.Declarations,
        .. LogOptions.Declarations,
        new("--driver-name", "DRIVER_NAME", $"CSI driver name (default {CsiDriverName.Default})"),
        new("--known-nodes", "KNOWN_NODES", "comma-separated node IDs to publish to; others are NOT_FOUND (default: any node; for conformance runs)"),
    ];

    /// <summary>Reads and validates the options.</summary>
    public static ControllerOptions From(HostCommandLine line) => new(
        GrpcHostOptions.From(line),
        LogOptions.From(line),
        line.Parse("--driver-name", CsiDriverName.Default, CsiDriverName.Validate),
        line.Parse("--known-nodes", "", ParseNodeList));

    private static IReadOnlySet<string>? ParseNodeList(string text)
    {
        var nodes = text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToHashSet(StringComparer.Ordinal);
        return nodes.Count == 0 ? null : nodes;
    }
}
