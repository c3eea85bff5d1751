namespace UblkCsi.GrpcHosting;

/// <summary>
/// A gRPC status other than OK. Service handlers throw it to answer with a specific status; the
/// client throws it when a call ends with a non-OK status or cannot be completed.
/// </summary>
public sealed class RpcException : Exception
{
    /// <summary>Creates an exception carrying <paramref name="statusCode"/> and a human-readable <paramref name="detail"/>.</summary>
    /// <param name="statusCode">The status code sent or received; must not be <see cref="StatusCode.OK"/>.</param>
    /// <param name="detail">The status message (grpc-message); shown to callers, so keep secrets out of it.</param>
    /// <param name="innerException">The local cause, never sent on the wire.</param>
    /// <param name="statusDetails">
    /// Optional serialized <c>google.rpc.Status</c> (or a wire-compatible message) sent in the
    /// <c>grpc-status-details-bin</c> trailer, so clients can rebuild structured errors.
    /// </param>
    public RpcException(StatusCode statusCode, string detail, Exception? innerException = null, byte[]? statusDetails = null)
        : base($"{statusCode}: {detail}", innerException)
    {
        if (statusCode == StatusCode.OK)
        {
            throw new ArgumentOutOfRangeException(nameof(statusCode), "an RpcException cannot carry status OK");
        }

        StatusCode = statusCode;
        Detail = detail;
        StatusDetails = statusDetails;
    }

    /// <summary>The gRPC status code.</summary>
    public StatusCode StatusCode { get; }

    /// <summary>The status message as sent in grpc-message.</summary>
    public string Detail { get; }

    /// <summary>The binary status details (grpc-status-details-bin), or null when none were sent.</summary>
    public byte[]? StatusDetails { get; }
}
