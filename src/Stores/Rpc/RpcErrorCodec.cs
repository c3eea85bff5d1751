using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using UblkCsi.BlockStore.V1;
using UblkCsi.Engine;
using Grpc.Core;

namespace UblkCsi.Stores.Rpc;

/// <summary>
/// Carries store failures across the wire with their meaning intact: the server turns a
/// <see cref="StoreException"/> or <see cref="BlockBackendException"/> into a gRPC status plus a
/// <see cref="StoreErrorInfo"/> in the status details, and the client rebuilds the same exception
/// type (parameter name, object kind and id, errno) from them.
/// </summary>
public static class RpcErrorCodec
{
    private const int ENOSPC = 28;

    /// <summary>The trailer that carries the google.rpc.Status wire form (binary: the -bin suffix).</summary>
    private const string StatusDetailsTrailer = "grpc-status-details-bin";

    // ---------------------------------------------------------------- server side

    /// <summary>The status for a control-path failure.</summary>
    public static RpcException FromStoreException(StoreException e)
    {
        var info = new StoreErrorInfo();
        switch (e)
        {
            case StoreParameterException p:
                info.Parameter = p.ParameterName;
                break;
            case StoreNotFoundException n:
                info.ObjectKind = ToProto(n.Kind);
                info.ObjectId = n.Id;
                break;
            case StoreAlreadyExistsException a:
                info.ObjectKind = ToProto(a.Kind);
                info.ObjectId = a.Name;
                break;
        }

        return Build(StoreStatusCodes.ToStatusCode(e.Code), e.Message, info);
    }

    /// <summary>The status for a data-path failure; the errno travels in the details.</summary>
    public static RpcException FromBackendException(BlockBackendException e)
    {
        return Build(StatusFor(e), e.Message, new StoreErrorInfo { Errno = e.Errno });
    }

    /// <summary>
    /// The status for an I/O failure of the store itself on the control path: a full filesystem is
    /// RESOURCE_EXHAUSTED; anything else stays unmapped (the server logs it and answers INTERNAL).
    /// </summary>
    public static RpcException? FromIOException(IOException e) =>
        e.HResult == ENOSPC ? Build(StatusCode.ResourceExhausted, "the block-store server's storage is full", new StoreErrorInfo { Errno = ENOSPC }) : null;

    /// <summary>
    /// The refusal of a mutation from a writer whose lease a later read-write open took: FAILED_PRECONDITION
    /// with errno EIO (the pair no other data-path failure uses, see <see cref="IsWriterSuperseded"/>).
    /// </summary>
    public static RpcException WriterSuperseded(string volumeId, ulong writerGeneration, ulong currentGeneration) =>
        Build(StatusCode.FailedPrecondition,
            $"volume '{volumeId}' was opened for writing elsewhere (writer generation {currentGeneration}); this writer (generation {writerGeneration}) was taken over and may no longer change it",
            new StoreErrorInfo { Errno = BlockBackendException.EIO });

    /// <summary>True for the answer <see cref="WriterSuperseded"/> builds: never retried; the volume was taken over.</summary>
    public static bool IsWriterSuperseded(StatusCode code, int errno) =>
        code == StatusCode.FailedPrecondition && errno == BlockBackendException.EIO;

    /// <summary>An INVALID_ARGUMENT naming a request field.</summary>
    public static RpcException InvalidArgument(string parameter, string message) =>
        FromStoreException(new StoreParameterException(parameter, message));

    private static RpcException Build(StatusCode code, string message, StoreErrorInfo info)
    {
        var status = new ErrorStatus { Code = (int)code, Message = message };
        status.Details.Add(Any.Pack(info));
        return new RpcException(new Status(code, message), new Metadata { { StatusDetailsTrailer, status.ToByteArray() } });
    }


    // ---------------------------------------------------------------- client side

    /// <summary>
    /// The store exception a control-path status stands for. Statuses without a store meaning
    /// (INTERNAL, UNKNOWN, UNIMPLEMENTED, ...) become an <see cref="IOException"/>, as an unexpected
    /// failure of a local store would.
    /// </summary>
    public static Exception ToStoreException(RpcException e, string server)
    {
        var info = ReadInfo(e);
        var kind = info is null ? null : FromProto(info.ObjectKind);
        switch (e.StatusCode)
        {
            case StatusCode.InvalidArgument when info is { Parameter.Length: > 0 }:
                return new StoreParameterException(info.Parameter, StripPrefix(e.Status.Detail, $"parameter '{info.Parameter}': "));
            case StatusCode.InvalidArgument:
                return new StoreException(StoreErrorCode.InvalidArgument, e.Status.Detail, e);
            case StatusCode.NotFound when kind is { } k && info!.ObjectId.Length > 0:
                return new StoreNotFoundException(k, info.ObjectId);
            case StatusCode.NotFound:
                return new StoreException(StoreErrorCode.NotFound, e.Status.Detail, e);
            case StatusCode.AlreadyExists when kind is { } k && info!.ObjectId.Length > 0:
                var prefix = $"{k.ToString().ToLowerInvariant()} '{info.ObjectId}' already exists with ";
                return new StoreAlreadyExistsException(k, info.ObjectId, StripPrefix(e.Status.Detail, prefix));
            case StatusCode.AlreadyExists:
                return new StoreException(StoreErrorCode.AlreadyExists, e.Status.Detail, e);
            case StatusCode.ResourceExhausted:
                return new StoreCapacityException(e.Status.Detail);
            case StatusCode.OutOfRange:
                return new StoreOutOfRangeException(e.Status.Detail);
            case StatusCode.FailedPrecondition:
                return new StoreException(StoreErrorCode.FailedPrecondition, e.Status.Detail, e);
            case StatusCode.PermissionDenied:
                // The server's own store refused its credentials (e.g. a bucket policy): the same failure as a local one.
                return new StoreException(StoreErrorCode.PermissionDenied, e.Status.Detail, e);
            case StatusCode.Unauthenticated:
                return new StoreParameterException(RpcStoreProvider.TokenSecret, $"the block-store server {server} refused the call: {e.Status.Detail}");
            case StatusCode.Unavailable or StatusCode.DeadlineExceeded:
                return new StoreException(StoreErrorCode.Unavailable, $"block-store server {server} is unavailable: {e.Status.Detail}", e);
            default:
                return new IOException($"block-store server {server} failed: {e.StatusCode}: {e.Status.Detail}", e);
        }
    }

    /// <summary>
    /// The data-path failure a status stands for: the server's errno when it sent one, else EINVAL
    /// for argument errors and EIO for everything else (unreachable server, refused token, ...).
    /// </summary>
    public static BlockBackendException ToBackendException(RpcException e, string volumeId, string server)
    {
        var info = ReadInfo(e);
        if (info is { Errno: > 0 })
        {
            return new BlockBackendException(info.Errno, e.Status.Detail, e);
        }

        return new BlockBackendException(ErrnoFor(e.StatusCode), $"volume '{volumeId}' on block-store server {server}: {e.StatusCode}: {e.Status.Detail}", e);
    }

    /// <summary>The errno of a data-path status that came without one: EINVAL for argument errors, else EIO.</summary>
    public static int ErrnoFor(StatusCode code) => code switch
    {
        StatusCode.InvalidArgument or StatusCode.OutOfRange => BlockBackendException.EINVAL,
        _ => BlockBackendException.EIO,
    };

    /// <summary>The status code a data-path failure travels with (the errno goes with it).</summary>
    public static StatusCode StatusFor(BlockBackendException e) => e.Errno switch
    {
        BlockBackendException.EINVAL => StatusCode.InvalidArgument,
        BlockBackendException.ENOSPC => StatusCode.ResourceExhausted,
        BlockBackendException.EROFS => StatusCode.FailedPrecondition,
        BlockBackendException.EOPNOTSUPP => StatusCode.Unimplemented,
        _ => StatusCode.Internal,
    };

    private static StoreErrorInfo? ReadInfo(RpcException e)
    {
        var details = e.Trailers.GetValueBytes(StatusDetailsTrailer);
        if (details is null)
        {
            return null;
        }

        try
        {
            var status = ErrorStatus.Parser.ParseFrom(details);
            foreach (var detail in status.Details)
            {
                if (detail.TryUnpack<StoreErrorInfo>(out var info))
                {
                    return info;
                }
            }
        }
        catch (InvalidProtocolBufferException)
        {
            // Details from a different implementation: fall back to the status code alone.
        }

        return null;
    }

    private static string StripPrefix(string text, string prefix) =>
        text.StartsWith(prefix, StringComparison.Ordinal) ? text[prefix.Length..] : text;

    private static BlockStore.V1.ObjectKind ToProto(StoreObjectKind kind) =>
        kind == StoreObjectKind.Snapshot ? BlockStore.V1.ObjectKind.Snapshot : BlockStore.V1.ObjectKind.Volume;

    private static StoreObjectKind? FromProto(BlockStore.V1.ObjectKind kind) => kind switch
    {
        BlockStore.V1.ObjectKind.Volume => StoreObjectKind.Volume,
        BlockStore.V1.ObjectKind.Snapshot => StoreObjectKind.Snapshot,
        _ => null,
    };
}
