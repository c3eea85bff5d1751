using UblkCsi.NodePlugin.Metrics;
using UblkCsi.NodePlugin.State;

namespace UblkCsi.NodePlugin.Volumes;

/// <summary>A volume staged on this node and served by this process: its record, device and open store volume.</summary>
public sealed class StagedVolume(StagedVolumeRecord record, IServedDevice device, OpenedVolume volume)
{
    private long _errorsAtLastCheck;

    /// <summary>What was staged (as persisted).</summary>
    public StagedVolumeRecord Record { get; } = record;

    /// <summary>The ublk device.</summary>
    public IServedDevice Device { get; } = device;

    /// <summary>The open store volume the device serves.</summary>
    public OpenedVolume Volume { get; } = volume;

    /// <summary>What the metrics exporter reads at each scrape.</summary>
    public VolumeMetricsSource? MetricsSource() => Volume.Meter is { } meter
        ? new VolumeMetricsSource(
            Record.VolumeId,
            meter,
            Volume.Throttle,
            Device.Completion.IsCompleted || !Device.NodeExists ? "gone" : "live",
            Record.Recoveries,
            Record.LastAdoptionGapSeconds,
            Volume.StoreMetrics)
        : null;

    /// <summary>
    /// Null when healthy, else what a human should know: the device's server stopped, its node is
    /// gone, or the store failed requests since the previous check (unreachable, out of space, ...).
    /// </summary>
    public string? CheckHealth()
    {
        if (Device.Completion.IsCompleted)
        {
            return Device.Completion.IsFaulted
                ? $"the ublk device {Device.Path} is no longer served: a queue failed ({Device.Completion.Exception?.GetBaseException().Message}); I/O on this volume fails until it is staged again"
                : $"the ublk device {Device.Path} was stopped outside the node plugin; I/O on this volume fails until it is staged again";
        }

        if (!Device.NodeExists)
        {
            return $"the block device {Device.Path} is gone from /dev";
        }

        if (Volume.StoreCondition is { Abnormal: true } store)
        {
            return $"the {Record.StoreType} store reports: {store.Message}";
        }

        var errors = Device.BackendErrors;
        var previous = Interlocked.Exchange(ref _errorsAtLastCheck, errors);
        if (errors > previous)
        {
            return $"the {Record.StoreType} store failed {errors - previous} I/O request(s) since the last check (store unreachable or out of space?); applications saw I/O errors";
        }

        return null;
    }
}
