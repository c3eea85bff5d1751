using Grpc.Core;

namespace UblkCsi.Stores;

/// <summary>
/// The gRPC status each <see cref="StoreErrorCode"/> names: the one mapping the CSI hosts and the
/// block-store protocol share, so a store failure reads the same over every wire.
/// </summary>
public static class StoreStatusCodes
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
