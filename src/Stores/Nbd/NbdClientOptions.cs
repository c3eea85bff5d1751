using UblkCsi.GrpcEndpoints;
using UblkCsi.Stores.Rpc;

namespace UblkCsi.Stores.Nbd;

/// <summary>Where an NBD client connects and how it behaves when the server misbehaves.</summary>
/// <param name="Endpoint">tcp://HOST:PORT or unix:///PATH of the server.</param>
/// <param name="Export">Export name ("" is the server's default export).</param>
/// <param name="Connections">Parallel connections at most; null: one per calling engine queue, up to <see cref="DefaultMaxConnections"/>. Always 1 unless the export advertises NBD_FLAG_CAN_MULTI_CONN.</param>
/// <param name="ReadOnly">Open for reads only; a read-write open of a read-only export is refused.</param>
public sealed record NbdClientOptions(GrpcEndpoint Endpoint, string Export, int? Connections = null, bool ReadOnly = false)
{
    /// <summary>Connections when none are configured and the export allows several.</summary>
    public const int DefaultMaxConnections = 8;

    /// <summary>Bound of connect plus negotiation; a server that accepts and then says nothing must not hold the caller.</summary>
    public TimeSpan HandshakeTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>A request without a reply for this long counts as a lost connection (dropped, reconnected, request sent again).</summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>TLS (NBD_OPT_STARTTLS) on every connection, or null for cleartext.</summary>
    public RpcTls? Tls { get; init; }

    /// <summary>The name the server's certificate must carry: the endpoint's host, or localhost for a unix socket.</summary>
    public string TlsHost => Endpoint.Host ?? "localhost";

    /// <summary>How the export is named in messages, logs and <see cref="NbdExport.Name"/> (default: <see cref="Export"/>). Set it when the name is a credential.</summary>
    public string? ExportLabel { get; init; }

    /// <summary>The name connection N (0, 1, ...) asks for, reconnects included (default: <see cref="Export"/> for every connection).</summary>
    public Func<int, string>? ConnectionExport { get; init; }

    /// <summary>The counters reconnects and reissued requests go to (default: <c>nbd_reconnects_total</c>, <c>nbd_reissued_requests_total</c>).</summary>
    internal Metrics.ReconnectCounters? Counters { get; init; }

    /// <summary>The export as messages name it.</summary>
    public string DisplayExport => ExportLabel ?? Export;

    /// <summary>Retries of lost connections.</summary>
    public NbdReconnectPolicy Reconnect { get; init; } = NbdReconnectPolicy.Default;

    /// <summary>How the server is named in messages: endpoint plus export.</summary>
    public string Server => $"nbd server {Endpoint}";
}
