using UblkCsi.Engine.Backends.Metering;
using UblkCsi.Engine.Backends.Qos;
using UblkCsi.Stores;

namespace UblkCsi.NodePlugin.Metrics;

/// <summary>What the node plugin knows about one served volume, read at each scrape.</summary>
/// <param name="VolumeId">The CSI volume ID (the <c>volume_id</c> label).</param>
/// <param name="Meter">The volume's I/O meter.</param>
/// <param name="Qos">The volume's QoS stage, or null when it has no limits.</param>
/// <param name="DeviceState">The ublk device's state: live, quiesced, gone.</param>
/// <param name="Recoveries">How many times a plugin process adopted the device after its predecessor.</param>
/// <param name="LastAdoptionGapSeconds">How long the device was without a server during the last adoption, if any.</param>
/// <param name="Store">The store volume's own counters (s3 cache, uploads; rpc and nbd reconnects), when its store keeps any.</param>
public sealed record VolumeMetricsSource(
    string VolumeId,
    IoMeter Meter,
    ThrottledBackend? Qos,
    string DeviceState,
    long Recoveries,
    double? LastAdoptionGapSeconds,
    IStoreVolumeMetrics? Store = null);
