using Google.Protobuf.Reflection;

namespace Csi.V1;

/// <summary>
/// The CSI service descriptors by name, so
/// tests and tools can name them without the generated service classes.
/// </summary>
public static class CsiServices
{
    /// <summary>csi.v1.Identity: served by both the controller and the node plugin.</summary>
    public static ServiceDescriptor Identity { get; } = Find("Identity");

    /// <summary>csi.v1.Controller.</summary>
    public static ServiceDescriptor Controller { get; } = Find("Controller");

    /// <summary>csi.v1.GroupController.</summary>
    public static ServiceDescriptor GroupController { get; } = Find("GroupController");

    /// <summary>csi.v1.SnapshotMetadata (server-streaming, alpha).</summary>
    public static ServiceDescriptor SnapshotMetadata { get; } = Find("SnapshotMetadata");

    /// <summary>csi.v1.Node.</summary>
    public static ServiceDescriptor Node { get; } = Find("Node");

    private static ServiceDescriptor Find(string name) => CsiReflection.Descriptor.Services.Single(s => s.Name == name);
}
