using Google.Protobuf.Reflection;
using UblkCsi.BlockStore.V1;

namespace UblkCsi.Stores.Rpc;

/// <summary>Constants and descriptors of the block-store protocol (proto/blockstore/blockstore.proto).</summary>
public static class BlockStoreProtocol
{
    /// <summary>The protocol revision this build speaks.</summary>
    public const uint Version = 1;

    /// <summary>
    /// Largest data payload one Read or Write carries. Bounded messages keep every call short, so one
    /// large I/O cannot hold an HTTP/2 connection's window or a server buffer for long.
    /// </summary>
    public const int MaxPayloadBytes = 1 << 20;

    /// <summary>
    /// Largest request message the server accepts: a full payload plus room for the other fields.
    /// </summary>
    public const int MaxMessageBytes = MaxPayloadBytes + (64 << 10);

    /// <summary>The metadata key that carries the shared token.</summary>
    public const string AuthorizationMetadata = "authorization";

    /// <summary>The scheme prefix of the authorization value.</summary>
    public const string BearerPrefix = "Bearer ";

    /// <summary>The <c>ublkcsi.blockstore.v1.BlockStore</c> service.</summary>
    public static ServiceDescriptor Service { get; } = BlockstoreReflection.Descriptor.Services.Single(s => s.Name == "BlockStore");

    /// <summary>A method of <see cref="Service"/> by name.</summary>
    public static MethodDescriptor Method(string name) =>
        Service.FindMethodByName(name) ?? throw new ArgumentException($"{Service.FullName} has no method '{name}'", nameof(name));
}
