namespace UblkCsi.GrpcHosting;

/// <summary>What a service handler knows about the call it serves.</summary>
public sealed class ServerCallContext
{
    private readonly Microsoft.AspNetCore.Http.IHeaderDictionary? _requestHeaders;

    internal ServerCallContext(string method, DateTime deadline, CancellationToken cancellationToken, Microsoft.AspNetCore.Http.IHeaderDictionary? requestHeaders = null)
    {
        Method = method;
        Deadline = deadline;
        CancellationToken = cancellationToken;
        _requestHeaders = requestHeaders;
    }

    /// <summary>The full method path, e.g. <c>/csi.v1.Identity/Probe</c>.</summary>
    public string Method { get; }

    /// <summary>The caller's deadline in UTC, or <see cref="DateTime.MaxValue"/> when it set none.</summary>
    public DateTime Deadline { get; }

    /// <summary>Cancelled when the deadline passes, the caller goes away, or the server shuts down hard.</summary>
    public CancellationToken CancellationToken { get; }

    /// <summary>
    /// A request metadata value (an HTTP/2 header such as <c>authorization</c>), or null when the
    /// caller sent none. The call log never records metadata, so it may carry credentials.
    /// </summary>
    /// <param name="name">The metadata key, lower case.</param>
    public string? GetRequestMetadata(string name)
    {
        if (_requestHeaders is null || !_requestHeaders.TryGetValue(name, out var values) || values.Count == 0)
        {
            return null;
        }

        return values[0];
    }

    /// <summary>The parsed request, kept for the call log once it has been read.</summary>
    internal Google.Protobuf.IMessage? Request { get; set; }
}
