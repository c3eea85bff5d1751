using UblkCsi.Protocol;

namespace UblkCsi.Controller;

/// <summary>How a <see cref="ControllerService"/> is scoped.</summary>
/// <param name="DriverName">The CSI driver name (topology keys derive from it).</param>
public sealed record ControllerServiceOptions(string DriverName)
{
    /// <summary>Store types served centrally: the network stores, and file for a root shared by every node.</summary>
    public static readonly IReadOnlyList<string> CentralStoreTypes = ["file", "s3", "rpc"];

    /// <summary>Store types served by a node plugin for its own node.</summary>
    public static readonly IReadOnlyList<string> NodeLocalStoreTypes = ["file"];

    /// <summary>
    /// Node-local mode: this service runs inside the node plugin of this node (distributed provisioning),
    /// serves only file volumes on this node, pins them to it with accessible_topology and needs no
    /// attach. Null: the central controller.
    /// </summary>
    public string? NodeLocalNodeId { get; init; }

    /// <summary>The store types the <c>store</c> parameter may name; defaults by mode.</summary>
    public IReadOnlyList<string>? StoreTypes { get; init; }

    /// <summary>
    /// When set, ControllerPublishVolume answers NOT_FOUND for any other node ID. Unset, the controller
    /// trusts the external-attacher, which only names nodes that exist.
    /// </summary>
    public IReadOnlySet<string>? KnownNodes { get; init; }

    /// <summary>The topology key of the node segment.</summary>
    public string NodeTopologyKey => CsiTopology.NodeKey(DriverName);

    /// <summary>The effective store types.</summary>
    public IReadOnlyList<string> EffectiveStoreTypes => StoreTypes ?? (NodeLocalNodeId is null ? CentralStoreTypes : NodeLocalStoreTypes);
}
