using System.Text;
using UblkCsi.GrpcEndpoints;
using UblkCsi.GrpcHosting;
using UblkCsi.Hosting;
using UblkCsi.Protocol;

namespace UblkCsi.NodePlugin;

/// <summary>The node plugin's options.</summary>
/// <param name="Grpc">Endpoint and message size.</param>
/// <param name="Logging">Log level and format.</param>
/// <param name="DriverName">The CSI driver name reported by GetPluginInfo.</param>
/// <param name="NodeId">This node's identity as reported by NodeGetInfo (in Kubernetes, the node name).</param>
/// <param name="StateDirectory">Where the plugin keeps the records that let a restarted plugin adopt its devices.</param>
/// <param name="KubeletDirectory">kubelet's root directory: staging and target paths must lie inside it, and it must be a shared mount.</param>
/// <param name="MaxVolumesPerNode">max_volumes_per_node in NodeGetInfo; 0 leaves the limit to the CO.</param>
/// <param name="DeviceQueues">Hardware queues (one serving thread each) per ublk device.</param>
/// <param name="ControllerEndpoint">
/// Where to serve the node-local controller (distributed provisioning of file volumes), or null for none.
/// </param>
/// <param name="ControllerDriverName">The driver name served at <paramref name="ControllerEndpoint"/>.</param>
/// <param name="ZeroCopy">Let devices use zero copy (UBLK_F_AUTO_BUF_REG, Linux 6.16+) where the store serves it; false keeps the copy path.</param>
public sealed record NodeOptions(
    GrpcHostOptions Grpc,
    LogOptions Logging,
    string DriverName,
    string NodeId,
    string StateDirectory,
    string KubeletDirectory = NodeOptions.DefaultKubeletDirectory,
    long MaxVolumesPerNode = 0,
    int DeviceQueues = 1,
    GrpcEndpoint? ControllerEndpoint = null,
    string? ControllerDriverName = null,
    bool ZeroCopy = true)
{
    /// <summary>The prefix of the node-local driver name: <c>local.&lt;driver-name&gt;</c>.</summary>
    public const string LocalDriverPrefix = "local.";

    /// <summary>Default kubelet root directory.</summary>
    public const string DefaultKubeletDirectory = "/var/lib/kubelet";

    /// <summary>The CSI limit for node_id.</summary>
    public const int MaxNodeIdBytes = 256;

    /// <summary>Default state directory.</summary>
    public const string DefaultStateDirectory = "/var/lib/ublk-csi";

    /// <summary>Declarations for parsing and --help.</summary>
    public static IReadOnlyList<HostOption> Declarations { get; } =
    [
        .. GrpcHostOptions.Declarations,
        .. LogOptions.Declarations,
        new("--driver-name", "DRIVER_NAME", $"CSI driver name (default {CsiDriverName.Default})"),
        new("--node-id", "NODE_ID", "this node's ID, usually the Kubernetes node name (required)"),
        new("--state-dir", "STATE_DIR", $"absolute directory for device recovery state (default {DefaultStateDirectory})"),
        new("--kubelet-dir", "KUBELET_DIR", $"kubelet's root directory, a shared mount (default {DefaultKubeletDirectory})"),
        new("--max-volumes-per-node", "MAX_VOLUMES_PER_NODE", "most volumes the scheduler may place on this node; 0 = no limit (default 0)"),
        new("--device-queues", "DEVICE_QUEUES", "queues (serving threads) per ublk device, 1 to 16: more for throughput, fewer for many idle volumes (default 1)"),
        new("--zero-copy", "ZERO_COPY", "auto: zero-copy I/O (Linux 6.16+ UBLK_F_AUTO_BUF_REG) for volumes whose store serves it (the file store with O_DIRECT, the nbd store without TLS); off: always copy through user memory (default auto)"),
        new("--controller-endpoint", "CONTROLLER_ENDPOINT", "also serve the node-local controller (file volumes of this node) at unix:///path.sock or tcp://host:port (default: off)"),
        new("--controller-driver-name", "CONTROLLER_DRIVER_NAME", $"driver name served at --controller-endpoint (default {LocalDriverPrefix}<driver-name>)"),
    ];

    /// <summary>Reads and validates the options.</summary>
    public static NodeOptions From(HostCommandLine line)
    {
        var grpc = GrpcHostOptions.From(line);
        var logging = LogOptions.From(line);
        var driverName = line.Parse("--driver-name", CsiDriverName.Default, CsiDriverName.Validate);
        line.Require("--node-id");
        var nodeId = line.Parse("--node-id", string.Empty, ValidateNodeId);
        var stateDirectory = line.Parse("--state-dir", DefaultStateDirectory, ValidateStateDirectory);
        var kubeletDirectory = line.Parse("--kubelet-dir", DefaultKubeletDirectory, ValidateStateDirectory);
        var maxVolumes = line.Parse("--max-volumes-per-node", "0", ValidateMaxVolumes);
        var queues = line.Parse("--device-queues", "1", ValidateQueues);
        var zeroCopy = line.Parse("--zero-copy", "auto", ParseZeroCopy);
        var controllerEndpoint = line.Get("--controller-endpoint") is { } endpoint ? line.Parse("--controller-endpoint", endpoint, GrpcEndpoint.Parse) : null;
        if (controllerEndpoint is not null && controllerEndpoint.ToString() == grpc.Endpoint.ToString())
        {
            throw new HostOptionException("--controller-endpoint", $"'{controllerEndpoint}' must differ from --endpoint");
        }

        // A given name is always checked; the default only matters (and can only be too long) when served.
        var controllerDriverName = controllerEndpoint is not null || line.Get("--controller-driver-name") is not null
            ? line.Parse("--controller-driver-name", LocalDriverPrefix + driverName, CsiDriverName.Validate)
            : null;
        return new NodeOptions(grpc, logging, driverName, nodeId, stateDirectory, kubeletDirectory, maxVolumes, queues, controllerEndpoint, controllerEndpoint is null ? null : controllerDriverName, zeroCopy);
    }

    private static bool ParseZeroCopy(string value) => value switch
    {
        "auto" => true,
        "off" => false,
        _ => throw new FormatException($"'{value}' is not one of: auto, off"),
    };

    private static string ValidateNodeId(string value)
    {
        if (Encoding.UTF8.GetByteCount(value) > MaxNodeIdBytes)
        {
            throw new FormatException($"must be at most {MaxNodeIdBytes} bytes");
        }

        if (value.Any(c => char.IsControl(c) || char.IsWhiteSpace(c)))
        {
            throw new FormatException($"'{value}' must not contain whitespace or control characters");
        }

        return value;
    }

    private static int ValidateQueues(string value) =>
        int.TryParse(value, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var queues) && queues is >= 1 and <= 16
            ? queues
            : throw new FormatException($"'{value}' is not a whole number from 1 to 16");

    private static long ValidateMaxVolumes(string value) =>
        long.TryParse(value, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var count)
            ? count
            : throw new FormatException($"'{value}' is not a non-negative whole number");

    private static string ValidateStateDirectory(string value)
    {
        if (!Path.IsPathFullyQualified(value))
        {
            throw new FormatException($"'{value}' must be an absolute path");
        }

        if (value.Contains('\0', StringComparison.Ordinal) || value.Split('/').Any(s => s is "." or ".."))
        {
            throw new FormatException($"'{value}' must not contain '.' or '..' segments");
        }

        return value.Length > 1 ? value.TrimEnd('/') : value;
    }
}
