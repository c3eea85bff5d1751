using Grpc.Core;
using UblkCsi.Stores;

namespace UblkCsi.NodePlugin.Volumes;

/// <summary>Maps a store's error code to the gRPC status it names.</summary>
public static class StoreErrors
{
    /// <summary>The status for <paramref name="code"/>.</summary>
    public static StatusCode ToStatusCode(StoreErrorCode code) => code switch
    {
        StoreErrorCode.InvalidArgument => StatusCode.InvalidArgument,
        StoreErrorCode.NotFound => StatusCode.NotFound,
        StoreErrorCode.AlreadyExists => StatusCode.AlreadyExists,
        StoreErrorCode.ResourceExhausted => StatusCode.ResourceExhausted,
        StoreErrorCode.OutOfRange => StatusCode.OutOfRange,
        StoreErrorCode.FailedPrecondition => StatusCode.FailedPrecondition,
        StoreErrorCode.Unavailable => StatusCode.Unavailable,
        StoreErrorCode.PermissionDenied => StatusCode.PermissionDenied,
        _ => StatusCode.Internal,
    };
}
