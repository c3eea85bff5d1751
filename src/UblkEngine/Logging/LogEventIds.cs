namespace UblkCsi.Engine.Logging;

/// <summary>
/// Every event id the engine and the stores log with, in one place so no two events share one in a
/// process (a test enumerates every [LoggerMessage] in the product's assemblies and checks it).
/// Ranges: engine 1000-1099, stores 1100-1199. The hosts keep their own ids below 1000, in ranges
/// that never meet in one process: GrpcHosting 1-19, Hosting 20-29, BlockStoreServer host 30-39,
/// Controller 100-199 (the node plugin serves it too, for node-local volumes), NodePlugin 200-299,
/// block-store service 400-499.
/// </summary>
public static class LogEventIds
{
    // Engine: threads
    public const int IoFlusherRefused = 1000;
    public const int AffinityRefused = 1001;
    public const int QueueAffinityUnknown = 1002;
    public const int QueueThreadLingers = 1003;

    // Engine: data path
    public const int FirstBackendFailure = 1010;
    public const int RepeatedBackendFailure = 1011;

    // Stores
    public const int S3WriteBackFailed = 1100;
    public const int S3WriteBackRecovered = 1101;
    public const int RpcTokenInCleartext = 1102;
    public const int NbdConnected = 1110;
    public const int NbdConnectionLost = 1111;
    public const int NbdConnectionRestored = 1112;
    public const int NbdReconnectFailed = 1113;
    public const int NbdGaveUp = 1114;
    public const int NbdSingleConnection = 1115;
    public const int NbdRequestFailed = 1116;
    public const int S3WriterFenced = 1120;
    public const int S3CompactionFailed = 1121;
}
