using UblkCsi.Engine;
using UblkCsi.Engine.Backends.Metering;
using UblkCsi.Engine.Backends.Qos;
using UblkCsi.Stores;

namespace UblkCsi.NodePlugin.Volumes;

/// <summary>A store volume opened for serving: the store's control path and the volume's data path.</summary>
public sealed class OpenedVolume(IVolumeStore? store, IBlockBackend backend) : IAsyncDisposable
{
    private readonly IBlockBackend _storeBackend = backend;

    /// <summary>The data path the device serves (after <see cref="Instrument"/>: metered and throttled).</summary>
    public IBlockBackend Backend { get; private set; } = backend;

    /// <summary>The store's own view of the volume's health (e.g. s3 write-back failing), healthy for other backends.</summary>
    public VolumeCondition StoreCondition => _storeBackend is StoreVolume storeVolume ? storeVolume.Condition : VolumeCondition.Healthy;

    /// <summary>The store volume's own counters, when its store keeps any (read at metrics scrapes).</summary>
    public IStoreVolumeMetrics? StoreMetrics => _storeBackend as IStoreVolumeMetrics;

    /// <summary>The volume's I/O meter, once instrumented.</summary>
    public IoMeter? Meter { get; private set; }

    /// <summary>The QoS stage, once instrumented (unlimited until limits are set: then it costs one check per request).</summary>
    public ThrottledBackend? Throttle { get; private set; }

    /// <summary>
    /// Puts the metering (outermost, so latencies include QoS waits) and the QoS stage in front of
    /// the store's data path. The QoS stage is there even without limits, so a VolumeAttributesClass
    /// change can add them to a live volume.
    /// </summary>
    public OpenedVolume Instrument(QosLimits limits)
    {
        Throttle = new ThrottledBackend(Backend, limits);
        Meter = new IoMeter();
        Backend = new MeteredBackend(Throttle, Meter);
        return this;
    }

    /// <summary>
    /// Applies the limits recorded in the store (ControllerModifyVolume writes them) when they changed
    /// since the last look; returns the new limits, or null when nothing changed or the store keeps no
    /// record. Until the store has recorded anything, the volume keeps the limits of its volume context
    /// (a statically provisioned volume may carry limits no controller recorded).
    /// </summary>
    public async Task<QosLimits?> RefreshQosAsync(string storeVolumeId, CancellationToken cancellationToken)
    {
        if (Throttle is null || store is not IVolumeQosRecord records)
        {
            return null;
        }

        var recorded = await records.GetQosAsync(storeVolumeId, cancellationToken).ConfigureAwait(false);
        var previous = _lastRecorded;
        _lastRecorded = recorded;
        if (recorded == previous || (previous is null && recorded.IsUnlimited) || recorded == Throttle.Limits)
        {
            return null;
        }

        Throttle.UpdateLimits(recorded);
        return recorded;
    }

    private QosLimits? _lastRecorded;

    /// <summary>
    /// Makes the open volume serve the size its store now records (after ControllerExpandVolume),
    /// when the store can grow an open volume; returns that size, or null when the volume grows only
    /// when it is opened again. The store's size must cover <paramref name="requiredBytes"/>.
    /// </summary>
    public async Task<long?> TryGrowAsync(string storeVolumeId, long requiredBytes, CancellationToken cancellationToken)
    {
        if (store is null || _storeBackend is not StoreVolume volume)
        {
            return null;
        }

        var recorded = (await store.GetVolumeAsync(storeVolumeId, cancellationToken).ConfigureAwait(false)).SizeBytes;
        if (recorded < requiredBytes)
        {
            throw new StoreException(StoreErrorCode.FailedPrecondition, $"the store holds volume {storeVolumeId} at {recorded} bytes, less than the {requiredBytes} asked: expand it through the controller first");
        }

        return await volume.TryGrowAsync(recorded, cancellationToken).ConfigureAwait(false) ? recorded : null;
    }

    /// <summary>Makes completed writes durable, then closes the volume and its store.</summary>
    public async ValueTask DisposeAsync()
    {
        try
        {
            await Backend.DisposeAsync().ConfigureAwait(false);
        }
        finally
        {
            if (store is not null)
            {
                await store.DisposeAsync().ConfigureAwait(false);
            }
        }
    }
}

/// <summary>Opens a volume from its store; <see cref="StoreVolumeOpener"/> in production.</summary>
public interface IVolumeOpener
{
    /// <summary>Opens <paramref name="storeVolumeId"/> of the store the context names.</summary>
    /// <exception cref="StoreException">Its code names the CSI status (NotFound, InvalidArgument, Unavailable, ...).</exception>
    Task<OpenedVolume> OpenAsync(VolumeContext context, IReadOnlyDictionary<string, string> secrets, string storeVolumeId, bool readOnly, CancellationToken cancellationToken);
}

/// <summary>Opens volumes through <see cref="StoreRegistry"/>.</summary>
public sealed class StoreVolumeOpener : IVolumeOpener
{
    /// <summary>The stores a CSI volume_context may name; memory and null live only inside one process.</summary>
    public static readonly IReadOnlySet<string> ServableStores = new HashSet<string>(StringComparer.Ordinal) { "file", "s3", "rpc" };

    /// <inheritdoc />
    public async Task<OpenedVolume> OpenAsync(VolumeContext context, IReadOnlyDictionary<string, string> secrets, string storeVolumeId, bool readOnly, CancellationToken cancellationToken)
    {
        if (!ServableStores.Contains(context.StoreType))
        {
            throw new StoreParameterException(VolumeContext.StoreKey, $"store '{context.StoreType}' cannot back a CSI volume; allowed: {string.Join(", ", ServableStores.Order())}");
        }

        var store = StoreRegistry.Open(context.StoreType, context.StoreParameters, secrets);
        try
        {
            var backend = await store.OpenVolumeAsync(storeVolumeId, readOnly ? VolumeAccess.ReadOnly : VolumeAccess.ReadWrite, cancellationToken).ConfigureAwait(false);
            return new OpenedVolume(store, backend);
        }
        catch
        {
            await store.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }
}
