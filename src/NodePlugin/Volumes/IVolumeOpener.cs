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

    /// <summary>The volume's I/O meter, once instrumented.</summary>
    public IoMeter? Meter { get; private set; }

    /// <summary>The QoS stage, when the volume has limits.</summary>
    public ThrottledBackend? Throttle { get; private set; }

    /// <summary>
    /// Puts the metering (outermost, so latencies include QoS waits) and, with limits, the QoS stage
    /// in front of the store's data path.
    /// </summary>
    public OpenedVolume Instrument(QosLimits limits)
    {
        Throttle = limits.IsUnlimited ? null : new ThrottledBackend(Backend, limits);
        Meter = new IoMeter();
        Backend = new MeteredBackend(Throttle ?? Backend, Meter);
        return this;
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
