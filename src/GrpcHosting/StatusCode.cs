namespace UblkCsi.GrpcHosting;

/// <summary>The canonical gRPC status codes, with their wire values.</summary>
public enum StatusCode
{
    /// <summary>Success.</summary>
    OK = 0,

    /// <summary>The operation was cancelled, typically by the caller.</summary>
    Cancelled = 1,

    /// <summary>An error that fits no other code.</summary>
    Unknown = 2,

    /// <summary>The caller sent an invalid argument.</summary>
    InvalidArgument = 3,

    /// <summary>The deadline expired before the operation completed.</summary>
    DeadlineExceeded = 4,

    /// <summary>A requested entity was not found.</summary>
    NotFound = 5,

    /// <summary>The entity the caller tried to create already exists.</summary>
    AlreadyExists = 6,

    /// <summary>The caller lacks permission for the operation.</summary>
    PermissionDenied = 7,

    /// <summary>A resource (quota, space, message size) is exhausted.</summary>
    ResourceExhausted = 8,

    /// <summary>The system is not in the state the operation requires.</summary>
    FailedPrecondition = 9,

    /// <summary>The operation was aborted, typically by a concurrency conflict.</summary>
    Aborted = 10,

    /// <summary>A value is outside the valid range.</summary>
    OutOfRange = 11,

    /// <summary>The operation is not implemented or not enabled.</summary>
    Unimplemented = 12,

    /// <summary>An invariant of the system is broken.</summary>
    Internal = 13,

    /// <summary>The service is currently unavailable; retrying may help.</summary>
    Unavailable = 14,

    /// <summary>Unrecoverable data loss or corruption.</summary>
    DataLoss = 15,

    /// <summary>The request lacks valid authentication credentials.</summary>
    Unauthenticated = 16,
}
