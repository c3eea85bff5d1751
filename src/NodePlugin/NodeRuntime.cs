using Microsoft.Extensions.Logging;
using UblkCsi.Engine;
using UblkCsi.NodePlugin.Host;
using UblkCsi.NodePlugin.State;
using UblkCsi.NodePlugin.Volumes;

namespace UblkCsi.NodePlugin;

/// <summary>What <see cref="NodeRuntime"/> is built from.</summary>
/// <param name="DriverName">The CSI driver name.</param>
/// <param name="NodeId">This node's ID.</param>
/// <param name="StateDirectory">Where volume and device records live.</param>
/// <param name="KubeletDirectory">kubelet's root directory.</param>
/// <param name="MaxVolumesPerNode">NodeGetInfo's max_volumes_per_node (0: unlimited).</param>
/// <param name="DeviceQueues">Queues per ublk device.</param>
/// <param name="ZeroCopy">Let devices use zero copy where the kernel and the store offer it.</param>
public sealed record NodeRuntimeSettings(string DriverName, string NodeId, string StateDirectory, string KubeletDirectory, long MaxVolumesPerNode, int DeviceQueues = 1, bool ZeroCopy = true);

/// <summary>Replaceable system parts, for tests; null members use the real ones.</summary>
public sealed record NodeSystem
{
    /// <summary>Mount operations.</summary>
    public IMounter? Mounter { get; init; }

    /// <summary>blkid, mkfs, growfs.</summary>
    public IFilesystemTools? Filesystems { get; init; }

    /// <summary>ublk devices.</summary>
    public IVolumeDevices? Devices { get; init; }

    /// <summary>Store volumes.</summary>
    public IVolumeOpener? Opener { get; init; }

    /// <summary>Skip the shared-kubelet-directory check (host tests, where nothing is mounted).</summary>
    public bool SkipKubeletDirectoryCheck { get; init; }

    /// <summary>The boot ID; null reads the kernel's.</summary>
    public string? BootId { get; init; }
}

/// <summary>
/// The node plugin's working parts, wired once per process: checks the kubelet directory, starts
/// adopting the devices a previous process left (Probe reports ready only when that is done), and
/// on dispose hands every device over to the next process instead of deleting it.
/// </summary>
public sealed partial class NodeRuntime : IAsyncDisposable
{
    private readonly VolumeStager _stager;
    private readonly StagedVolumes _staged;
    private readonly IVolumeDevices _devices;
    private readonly VolumePublisher _publisher;
    private readonly VolumeInspector _inspector;
    private readonly VolumeLocks _locks = new();
    private readonly NodePaths _paths;
    private readonly NodeRuntimeSettings _settings;
    private readonly ILoggerFactory _loggerFactory;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stopping = new();

    private NodeRuntime(NodeRuntimeSettings settings, NodeSystem system, ILoggerFactory loggerFactory)
    {
        _settings = settings;
        _loggerFactory = loggerFactory;
        _logger = loggerFactory.CreateLogger<NodeRuntime>();
        var mounter = system.Mounter ?? new LinuxMounter();
        if (!system.SkipKubeletDirectoryCheck && KubeletDirectoryCheck.Problem(settings.KubeletDirectory, mounter.ReadMounts()) is { } problem)
        {
            throw new InvalidOperationException(problem);
        }

        Directory.CreateDirectory(settings.StateDirectory);
        var filesystems = system.Filesystems ?? new LinuxFilesystemTools();
        _devices = system.Devices ?? new UblkVolumeDevices(Path.Combine(settings.StateDirectory, "devices"), settings.DeviceQueues, settings.ZeroCopy);
        var staged = new StagedVolumes();
        _staged = staged;
        _stager = new VolumeStager(
            staged,
            new StagedVolumeStore(settings.StateDirectory),
            _devices,
            system.Opener ?? new StoreVolumeOpener(),
            mounter,
            filesystems,
            system.BootId ?? BootId.Read(),
            loggerFactory.CreateLogger<VolumeStager>());
        _publisher = new VolumePublisher(staged, mounter, loggerFactory.CreateLogger<VolumePublisher>());
        _inspector = new VolumeInspector(staged, _devices, mounter, filesystems, loggerFactory.CreateLogger<VolumeInspector>());
        _paths = new NodePaths(settings.KubeletDirectory);
        Adoption = AdoptAsync();
        Service = CreateService(settings.DriverName);
        _qosRefresh = RefreshQosLoopAsync();
    }

    /// <summary>How often the volumes' QoS records are read: a VolumeAttributesClass change applies within this.</summary>
    public static TimeSpan QosRefreshInterval { get; } = TimeSpan.FromSeconds(10);

    private readonly Task _qosRefresh;

    /// <summary>The CSI Node service for the configured driver name.</summary>
    public NodeService Service { get; }

    /// <summary>
    /// A CSI Node service over this runtime's volumes (same staged volumes, records and per-volume locks)
    /// that reports the topology of <paramref name="driverName"/>: the node-local driver's socket serves
    /// the same node under its own name, and a volume is never staged twice.
    /// </summary>
    public NodeService CreateService(string driverName) => new(
        new NodeIdentity(_settings.NodeId, driverName, _settings.MaxVolumesPerNode),
        _stager,
        _publisher,
        _inspector,
        _locks,
        _paths,
        Adoption,
        _loggerFactory.CreateLogger<NodeService>());

    /// <summary>Completes when the startup adoption has finished (failures are logged per volume).</summary>
    public Task Adoption { get; }

    /// <summary>
    /// Null when the plugin itself is ready, else why not (still adopting). Combined with the host
    /// checks in Probe.
    /// </summary>
    public string? NotReadyReason => Adoption.IsCompleted ? null : "adopting the volumes of the previous plugin process";

    /// <summary>The served volumes as the Prometheus exporter reads them.</summary>
    public IReadOnlyCollection<Metrics.VolumeMetricsSource> MetricsSources() =>
        _staged.All.Select(v => v.MetricsSource()).OfType<Metrics.VolumeMetricsSource>().ToArray();

    /// <summary>Builds the runtime; throws <see cref="InvalidOperationException"/> with the fix when the node is misconfigured.</summary>
    public static NodeRuntime Start(NodeRuntimeSettings settings, ILoggerFactory loggerFactory, NodeSystem? system = null) =>
        new(settings, system ?? new NodeSystem(), loggerFactory);

    /// <summary>Hands every device over to the next plugin process.</summary>
    public async ValueTask DisposeAsync()
    {
        await _stopping.CancelAsync().ConfigureAwait(false);
        await _qosRefresh.ConfigureAwait(false);
        try
        {
            await Adoption.ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }

        await _stager.HandOverAllAsync(_locks).ConfigureAwait(false);
        (_devices as IDisposable)?.Dispose();
        _stopping.Dispose();
    }

    /// <summary>
    /// Polls every served volume's QoS record in its store (the source of truth ControllerModifyVolume
    /// writes) and applies changed limits to the live data path: no re-stage, no remount.
    /// </summary>
    private async Task RefreshQosLoopAsync()
    {
        await Task.Yield();
        using var timer = new PeriodicTimer(QosRefreshInterval);
        try
        {
            while (await timer.WaitForNextTickAsync(_stopping.Token).ConfigureAwait(false))
            {
                foreach (var volume in _staged.All)
                {
                    try
                    {
                        if (await volume.Volume.RefreshQosAsync(volume.Record.StoreVolumeId, _stopping.Token).ConfigureAwait(false) is { } limits)
                        {
                            QosChanged(_logger, volume.Record.VolumeId, string.Join(", ", limits.ToParameters().Select(p => $"{p.Key}={p.Value}")));
                        }
                    }
                    catch (Exception e) when (e is not OperationCanceledException)
                    {
                        // A store that cannot answer now keeps the limits in force; the next tick retries.
                        QosRefreshFailed(_logger, volume.Record.VolumeId, e.Message);
                    }
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    [LoggerMessage(EventId = 252, Level = LogLevel.Information, Message = "volume {VolumeId}: QoS limits changed to {Limits} (from the store's record)")]
    private static partial void QosChanged(ILogger logger, string volumeId, string limits);

    [LoggerMessage(EventId = 253, Level = LogLevel.Warning, Message = "volume {VolumeId}: cannot read its QoS record ({Reason}); the limits in force stay")]
    private static partial void QosRefreshFailed(ILogger logger, string volumeId, string reason);

    private async Task AdoptAsync()
    {
        // Off the constructor's thread: the gRPC endpoint comes up meanwhile and Probe says "not yet".
        await Task.Yield();
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        try
        {
            await _stager.AdoptAllAsync(_stopping.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            AdoptionCrashed(_logger, e.Message, e);
        }

        AdoptionFinished(_logger, System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalMilliseconds);
    }

    [LoggerMessage(EventId = 250, Level = LogLevel.Information, Message = "adoption of earlier volumes finished in {Milliseconds:F0} ms")]
    private static partial void AdoptionFinished(ILogger logger, double milliseconds);

    [LoggerMessage(EventId = 251, Level = LogLevel.Error, Message = "adopting earlier volumes failed: {Reason}")]
    private static partial void AdoptionCrashed(ILogger logger, string reason, Exception exception);
}
