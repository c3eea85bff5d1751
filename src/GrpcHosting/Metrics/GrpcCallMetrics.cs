using Grpc.Core;
using Prometheus;

namespace UblkCsi.GrpcHosting.Metrics;

/// <summary>
/// Calls per method by status code and their latency, in the process's Prometheus registry
/// (served by <see cref="MetricsEndpoint"/> when the host has a metrics address). Label values are
/// method paths and status names only, never request content.
/// </summary>
internal sealed class GrpcCallMetrics
{
    private static readonly double[] LatencyBuckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

    private readonly Counter _calls;
    private readonly Histogram _duration;

    public GrpcCallMetrics(CollectorRegistry registry)
    {
        var factory = Prometheus.Metrics.WithCustomRegistry(registry);
        _calls = factory.CreateCounter("ublk_csi_rpc_calls_total", "gRPC calls served, by method and status code.", "method", "code");
        _duration = factory.CreateHistogram("ublk_csi_rpc_duration_seconds", "Time to answer a gRPC call, by method.",
            new HistogramConfiguration { LabelNames = ["method"], Buckets = LatencyBuckets });
    }

    public void Completed(string method, StatusCode code, double seconds)
    {
        _calls.WithLabels(method, StatusName(code)).Inc();
        _duration.WithLabels(method).Observe(seconds);
    }

    /// <summary>The canonical upper-case status names gRPC tools print (OK, NOT_FOUND, ...), without allocating.</summary>
    private static string StatusName(StatusCode code) => code switch
    {
        StatusCode.OK => "OK",
        StatusCode.Cancelled => "CANCELLED",
        StatusCode.Unknown => "UNKNOWN",
        StatusCode.InvalidArgument => "INVALID_ARGUMENT",
        StatusCode.DeadlineExceeded => "DEADLINE_EXCEEDED",
        StatusCode.NotFound => "NOT_FOUND",
        StatusCode.AlreadyExists => "ALREADY_EXISTS",
        StatusCode.PermissionDenied => "PERMISSION_DENIED",
        StatusCode.ResourceExhausted => "RESOURCE_EXHAUSTED",
        StatusCode.FailedPrecondition => "FAILED_PRECONDITION",
        StatusCode.Aborted => "ABORTED",
        StatusCode.OutOfRange => "OUT_OF_RANGE",
        StatusCode.Unimplemented => "UNIMPLEMENTED",
        StatusCode.Internal => "INTERNAL",
        StatusCode.Unavailable => "UNAVAILABLE",
        StatusCode.DataLoss => "DATA_LOSS",
        StatusCode.Unauthenticated => "UNAUTHENTICATED",
        _ => "UNKNOWN",
    };
}
