namespace UblkCsi.Protocol;

/// <summary>
/// Topology keys of this driver. Volumes of a node-local store carry <c>{NodeKey: node ID}</c> in their
/// accessible_topology and the node plugin reports the same segment in NodeGetInfo, so the scheduler
/// keeps pods on the node that holds their volume.
/// </summary>
public static class CsiTopology
{
    /// <summary>The node segment key for a driver: <c>topology.&lt;driver&gt;/node</c>.</summary>
    public static string NodeKey(string driverName) => "topology." + driverName + "/node";
}
