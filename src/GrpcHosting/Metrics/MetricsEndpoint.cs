using System.Globalization;
using System.Net;
using Prometheus;

namespace UblkCsi.GrpcHosting.Metrics;

/// <summary>
/// Where a host serves Prometheus metrics: <c>HOST:PORT</c> (<c>0.0.0.0:9808</c>, <c>[::]:9808</c>,
/// <c>127.0.0.1:0</c> for a free port), text exposition at <c>/metrics</c> over HTTP/1.1 by
/// prometheus-net's own Kestrel listener, separate from the gRPC endpoint so a scrape never queues
/// behind CSI calls and the gRPC socket stays HTTP/2-only.
/// </summary>
public sealed record MetricsAddress(string Host, int Port)
{
    /// <summary>Parses <c>HOST:PORT</c>; the error says what is expected.</summary>
    public static MetricsAddress Parse(string value)
    {
        const string Expected = "expected HOST:PORT, e.g. 0.0.0.0:9808";
        var colon = value.LastIndexOf(':');
        if (colon <= 0 || colon == value.Length - 1)
        {
            throw new FormatException($"'{value}' is not a metrics address; {Expected}");
        }

        var host = value[..colon].Trim('[', ']');
        if (!int.TryParse(value[(colon + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out var port) || port > 65535)
        {
            throw new FormatException($"'{value}' has an invalid port (allowed: 0-65535); {Expected}");
        }

        if (!IPAddress.TryParse(host, out _) && !string.Equals(host, "localhost", StringComparison.OrdinalIgnoreCase) && host != "*")
        {
            throw new FormatException($"'{value}' must name an IP address, localhost or *; {Expected}");
        }

        return new MetricsAddress(host, port);
    }

    /// <inheritdoc/>
    public override string ToString() => Host.Contains(':', StringComparison.Ordinal) ? $"[{Host}]:{Port}" : $"{Host}:{Port}";
}

/// <summary>A running <c>/metrics</c> listener for one registry.</summary>
public sealed class MetricsEndpoint : IAsyncDisposable
{
    private readonly KestrelMetricServer _server;

    private MetricsEndpoint(KestrelMetricServer server, MetricsAddress address)
    {
        _server = server;
        Address = address;
    }

    /// <summary>Where it listens.</summary>
    public MetricsAddress Address { get; }

    /// <summary>Starts serving <paramref name="registry"/> at <paramref name="address"/>.</summary>
    public static MetricsEndpoint Start(MetricsAddress address, CollectorRegistry registry)
    {
        var host = address.Host is "0.0.0.0" or "::" ? "*" : address.Host;
        var server = new KestrelMetricServer(host, address.Port, "/metrics", registry, certificate: null);
        server.Start();
        return new MetricsEndpoint(server, address);
    }

    /// <inheritdoc/>
    public async ValueTask DisposeAsync()
    {
        await _server.StopAsync();
        _server.Dispose();
    }
}
