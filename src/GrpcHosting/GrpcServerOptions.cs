using UblkCsi.GrpcEndpoints;
using UblkCsi.GrpcHosting.Logging;

namespace UblkCsi.GrpcHosting;

/// <summary>Settings of a <see cref="GrpcServer"/>.</summary>
public sealed class GrpcServerOptions
{
    /// <summary>gRPC's own default limit for a received message: 4 MiB.</summary>
    public const int DefaultMaxReceiveMessageBytes = 4 * 1024 * 1024;

    /// <summary>Where to listen.</summary>
    public required GrpcEndpoint Endpoint { get; init; }

    /// <summary>Largest request message accepted, in bytes; larger ones get RESOURCE_EXHAUSTED. Default 4 MiB.</summary>
    public int MaxReceiveMessageBytes { get; init; } = DefaultMaxReceiveMessageBytes;

    /// <summary>Which request fields the call log must redact.</summary>
    public SensitiveFieldPolicy SensitiveFields { get; init; } = SensitiveFieldPolicy.None;

    /// <summary>Where to serve Prometheus metrics at /metrics, or null for no metrics listener.</summary>
    public Metrics.MetricsAddress? MetricsAddress { get; init; }

    /// <summary>The registry served at <see cref="MetricsAddress"/>; the call metrics are registered in it. Default: the process's.</summary>
    public Prometheus.CollectorRegistry MetricsRegistry { get; init; } = Prometheus.Metrics.DefaultRegistry;

    /// <summary>How long a graceful stop waits for in-flight calls. Default 30 s.</summary>
    public TimeSpan ShutdownTimeout { get; init; } = TimeSpan.FromSeconds(30);

    internal void Validate()
    {
        ArgumentNullException.ThrowIfNull(Endpoint);
        if (MaxReceiveMessageBytes < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxReceiveMessageBytes), MaxReceiveMessageBytes, "must be at least 1 byte");
        }

        if (ShutdownTimeout < TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(ShutdownTimeout), ShutdownTimeout, "must not be negative");
        }

        ArgumentNullException.ThrowIfNull(SensitiveFields);
    }
}
