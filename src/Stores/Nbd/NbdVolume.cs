using UblkCsi.Engine;
using UblkCsi.Stores.Internal;

namespace UblkCsi.Stores.Nbd;

/// <summary>
/// An NBD export as a volume. The device gets the features the export advertised: a volatile cache
/// (FLUSH) with NBD_FLAG_SEND_FLUSH, FUA with NBD_FLAG_SEND_FUA, discard and write-zeroes with
/// NBD_FLAG_SEND_WRITE_ZEROES. Discard is sent as WRITE_ZEROES without NO_HOLE (the server may punch
/// a hole, and must read back zeros), not as TRIM: after a TRIM the protocol leaves the content
/// undefined, and the store contract promises zeros. Write-zeroes sets NO_HOLE (the range stays
/// allocated, like the file store's zero-range).
/// </summary>
public sealed class NbdVolume : StoreVolume, IStoreVolumeMetrics
{
    private const int PreferredMaxIoBytes = 1 << 20;

    private readonly NbdClient _client;
    private int _disposed;

    internal NbdVolume(string volumeId, NbdClient client, bool readOnly)
        : base(volumeId, ToInfo(client.Export), readOnly)
    {
        _client = client;
    }

    /// <summary>The export as negotiated.</summary>
    public NbdExport Export => _client.Export;

    /// <summary>The client (tests inspect connections and options).</summary>
    public NbdClient Client => _client;

    public override VolumeCondition Condition => _client.Condition;

    /// <summary>Connections re-established (<c>nbd_reconnects_total</c>) and requests reissued on them (<c>nbd_reissued_requests_total</c>).</summary>
    public StoreMetricsSnapshot ReadMetrics() => _client.Reconnects.Read();

    public override async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            await _client.DisposeAsync().ConfigureAwait(false);
        }
    }

    public override bool ServesRegisteredBuffers => _client.ServesRegisteredBuffers;

    protected override ValueTask ReadCoreAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken) =>
        _client.ReadAsync(offset, buffer);

    /// <summary>Large reads land in the request's pages; writes keep the copy path, whose payload pipe already spares a copy.</summary>
    protected override bool TryReadRegisteredCore(long offset, RegisteredBuffer buffer, CancellationToken cancellationToken, out ValueTask pending) =>
        _client.TryReadRegistered(offset, buffer, out pending);

    protected override ValueTask WriteCoreAsync(long offset, ReadOnlyMemory<byte> data, bool fua, CancellationToken cancellationToken)
    {
        if (fua && !Export.CanFua && Export.CanFlush)
        {
            // The device does not advertise FUA then; a direct caller asking for it still gets durability.
            return WriteThenFlushAsync(offset, data);
        }

        return _client.WriteAsync(offset, data, fua && Export.CanFua);
    }

    protected override ValueTask FlushCoreAsync(CancellationToken cancellationToken) =>
        Export.CanFlush ? _client.FlushAsync() : default; // no flag: the server writes through

    protected override ValueTask DiscardCoreAsync(long offset, long length, CancellationToken cancellationToken) =>
        Export.CanWriteZeroes ? _client.WriteZeroesAsync(offset, length, noHole: false) : WriteZeroBuffersAsync(offset, length);

    protected override ValueTask WriteZeroesCoreAsync(long offset, long length, CancellationToken cancellationToken) =>
        Export.CanWriteZeroes ? _client.WriteZeroesAsync(offset, length, noHole: true) : WriteZeroBuffersAsync(offset, length);

    private async ValueTask WriteThenFlushAsync(long offset, ReadOnlyMemory<byte> data)
    {
        await _client.WriteAsync(offset, data, fua: false).ConfigureAwait(false);
        await _client.FlushAsync().ConfigureAwait(false);
    }

    /// <summary>Without WRITE_ZEROES (the device does not advertise discard then), zeros are written.</summary>
    private async ValueTask WriteZeroBuffersAsync(long offset, long length)
    {
        var step = Math.Min(ZeroBlock.Memory.Length, Export.MaximumPayload / StoreLimits.IoAlignment * StoreLimits.IoAlignment);
        for (long done = 0; done < length; done += step)
        {
            await _client.WriteAsync(offset + done, ZeroBlock.Memory[..(int)Math.Min(step, length - done)], fua: false).ConfigureAwait(false);
        }
    }

    private static BlockBackendInfo ToInfo(NbdExport export)
    {
        var features = BlockBackendFeatures.None;
        features |= export.CanFlush ? BlockBackendFeatures.VolatileCache : 0;
        features |= export.CanFua ? BlockBackendFeatures.Fua : 0;
        features |= export.CanWriteZeroes ? BlockBackendFeatures.Discard | BlockBackendFeatures.WriteZeroes : 0;
        var logical = export.LogicalBlockSize;
        var physical = Math.Clamp(export.PreferredBlockSize, logical, 4096);
        // 1 MiB requests when the server takes them whole: a 1 MiB I/O is then one NBD command and one
        // round trip, as with the kernel's client (max_sectors_kb 1280), instead of two.
        var preferredMaxIo = export.MaximumPayload >= PreferredMaxIoBytes ? PreferredMaxIoBytes : 0;
        return new BlockBackendInfo(export.UsableSizeBytes, logical, physical, features, PreferredMaxIoBytes: preferredMaxIo);
    }
}
