namespace UblkCsi.Engine.Logging;

/// <summary>
/// Every event id the engine and the stores log with, in one place so no two events share one in a
/// process (a test enumerates every [LoggerMessage] in the product's assemblies and checks it).
/// Ranges: engine 1000-1099, stores 1100-1199. The hosts (Hosting, GrpcHosting, NodePlugin,
/// Controller, BlockStoreServer) keep their own ids below 1000.
/// </summary>
public static class LogEventIds
{
    // Engine: threads
    public const int IoFlusherRefused = 1000;
    public const int AffinityRefused = 1001;
    public const int QueueAffinityUnknown = 1002;

    // Engine: data path
    public const int FirstBackendFailure = 1010;
    public const int RepeatedBackendFailure = 1011;

    // Stores
    public const int S3WriteBackFailed = 1100;
    public const int S3WriteBackRecovered = 1101;
}
