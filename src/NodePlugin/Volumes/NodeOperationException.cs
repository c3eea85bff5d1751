using Grpc.Core;

namespace UblkCsi.NodePlugin.Volumes;

/// <summary>A node operation refused or failed with the status code the CSI spec names for the case.</summary>
public sealed class NodeOperationException(StatusCode code, string message, Exception? inner = null) : Exception(message, inner)
{
    /// <summary>The gRPC status to answer with.</summary>
    public StatusCode Code { get; } = code;
}
