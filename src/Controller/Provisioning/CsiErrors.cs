using Grpc.Core;
using UblkCsi.Stores;

namespace UblkCsi.Controller.Provisioning;

/// <summary>The gRPC errors the CSI spec names, and the mapping of store failures onto them.</summary>
public static class CsiErrors
{
    public static RpcException InvalidArgument(string message) => new(new Status(StatusCode.InvalidArgument, message));

    public static RpcException NotFound(string message) => new(new Status(StatusCode.NotFound, message));

    public static RpcException AlreadyExists(string message) => new(new Status(StatusCode.AlreadyExists, message));

    public static RpcException FailedPrecondition(string message) => new(new Status(StatusCode.FailedPrecondition, message));

    public static RpcException OutOfRange(string message) => new(new Status(StatusCode.OutOfRange, message));

    public static RpcException Aborted(string message) => new(new Status(StatusCode.Aborted, message));

    public static RpcException ResourceExhausted(string message) => new(new Status(StatusCode.ResourceExhausted, message));

    public static RpcException Unimplemented(string message) => new(new Status(StatusCode.Unimplemented, message));

    /// <summary>A store failure as the status its code names (store messages never hold secrets).</summary>
    public static RpcException FromStore(StoreException e) => new(new Status(StoreStatusCodes.ToStatusCode(e.Code), e.Message));
}
