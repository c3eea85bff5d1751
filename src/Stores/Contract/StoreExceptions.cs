namespace UblkCsi.Stores;

/// <summary>
/// The kind of a store failure, named after the gRPC status a CSI service answers with, so a
/// controller maps it with a plain switch.
/// </summary>
public enum StoreErrorCode
{
    /// <summary>A parameter or argument is invalid (gRPC INVALID_ARGUMENT).</summary>
    InvalidArgument,

    /// <summary>The volume or snapshot does not exist (gRPC NOT_FOUND).</summary>
    NotFound,

    /// <summary>The name exists with incompatible properties (gRPC ALREADY_EXISTS).</summary>
    AlreadyExists,

    /// <summary>The store has no room (gRPC RESOURCE_EXHAUSTED).</summary>
    ResourceExhausted,

    /// <summary>A size is outside what the store or source allows (gRPC OUT_OF_RANGE).</summary>
    OutOfRange,

    /// <summary>The object is in a state that forbids the operation (gRPC FAILED_PRECONDITION).</summary>
    FailedPrecondition,

    /// <summary>The store's backing service cannot be reached; retry later (gRPC UNAVAILABLE).</summary>
    Unavailable,

    /// <summary>The backing service refused the credentials (gRPC PERMISSION_DENIED).</summary>
    PermissionDenied,
}

/// <summary>A store failure the caller can act on. Messages never contain secrets.</summary>
public class StoreException : Exception
{
    public StoreException(StoreErrorCode code, string message, Exception? inner = null)
        : base(message, inner)
    {
        Code = code;
    }

    /// <summary>Which gRPC status this failure maps to.</summary>
    public StoreErrorCode Code { get; }
}

/// <summary>
/// A StorageClass parameter, secret, spec element or request argument is missing, unknown or
/// invalid. <see cref="ParameterName"/> names it and the message says what is allowed. The value of a
/// secret is never part of the message.
/// </summary>
public sealed class StoreParameterException(string parameterName, string message)
    : StoreException(StoreErrorCode.InvalidArgument, $"parameter '{parameterName}': {message}")
{
    /// <summary>The parameter as the caller spelled it (e.g. "chunkSize", "accessKeyId", "name").</summary>
    public string ParameterName { get; } = parameterName;
}

/// <summary>What a not-found or already-exists error is about.</summary>
public enum StoreObjectKind
{
    Volume,
    Snapshot,
}

/// <summary>A volume or snapshot does not exist.</summary>
public sealed class StoreNotFoundException(StoreObjectKind kind, string id)
    : StoreException(StoreErrorCode.NotFound, $"{kind.ToString().ToLowerInvariant()} '{id}' does not exist")
{
    public StoreObjectKind Kind { get; } = kind;

    public string Id { get; } = id;
}

/// <summary>A volume or snapshot of that name exists with a different size or source.</summary>
public sealed class StoreAlreadyExistsException(StoreObjectKind kind, string name, string difference)
    : StoreException(StoreErrorCode.AlreadyExists, $"{kind.ToString().ToLowerInvariant()} '{name}' already exists with {difference}")
{
    public StoreObjectKind Kind { get; } = kind;

    public string Name { get; } = name;
}

/// <summary>The store has no room for the request.</summary>
public sealed class StoreCapacityException(string message) : StoreException(StoreErrorCode.ResourceExhausted, message);

/// <summary>A size is outside the store's limits or smaller than the source it must hold.</summary>
public sealed class StoreOutOfRangeException(string message) : StoreException(StoreErrorCode.OutOfRange, message);
