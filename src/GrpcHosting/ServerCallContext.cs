namespace UblkCsi.GrpcHosting;

/// <summary>What a service handler knows about the call it serves.</summary>
public sealed class ServerCallContext
{
    internal ServerCallContext(string method, DateTime deadline, CancellationToken cancellationToken)
    {
        Method = method;
        Deadline = deadline;
        CancellationToken = cancellationToken;
    }

    /// <summary>The full method path, e.g. <c>/csi.v1.Identity/Probe</c>.</summary>
    public string Method { get; }

    /// <summary>The caller's deadline in UTC, or <see cref="DateTime.MaxValue"/> when it set none.</summary>
    public DateTime Deadline { get; }

    /// <summary>Cancelled when the deadline passes, the caller goes away, or the server shuts down hard.</summary>
    public CancellationToken CancellationToken { get; }

    /// <summary>The parsed request, kept for the call log once it has been read.</summary>
    internal Google.Protobuf.IMessage? Request { get; set; }
}
