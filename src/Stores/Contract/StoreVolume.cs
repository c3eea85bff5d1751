using System.Runtime.CompilerServices;
using UblkCsi.Engine;

namespace UblkCsi.Stores;

/// <summary>
/// Base of every store's opened volume: checks each request once (alignment to
/// <see cref="StoreLimits.IoAlignment"/>, inside the volume, writable) and hands valid requests to the
/// store's implementation. Invalid requests fail with <see cref="BlockBackendException"/> (EINVAL, or
/// EROFS on a read-only volume) naming the offending value. The checks allocate nothing.
/// </summary>
public abstract class StoreVolume : IRegisteredBufferBackend
{
    private readonly BlockBackendInfo _info;
    private long _sizeBytes;

    protected StoreVolume(string volumeId, BlockBackendInfo info, bool readOnly)
    {
        VolumeId = volumeId;
        IsReadOnly = readOnly;
        _info = readOnly ? info with { Features = info.Features | BlockBackendFeatures.ReadOnly } : info;
        _sizeBytes = info.SizeBytes;
    }

    /// <summary>The store's ID of the volume (or the image path for a file spec).</summary>
    public string VolumeId { get; }

    public BlockBackendInfo Info => _info with { SizeBytes = SizeBytes };

    /// <summary>The size served now: the size opened with, or a larger one after <see cref="TryGrowAsync"/>.</summary>
    public long SizeBytes => Volatile.Read(ref _sizeBytes);

    public bool IsReadOnly { get; }

    /// <summary>Where the volume reports failures no request returns (background write-back); null logs nothing. Set by the opener.</summary>
    public Microsoft.Extensions.Logging.ILogger? Logger { get; set; }

    /// <summary>
    /// Abnormal while the volume has a problem no request reported (e.g. background write-back to
    /// the bucket failing): what a CSI VolumeCondition (NodeGetVolumeStats) reports.
    /// </summary>
    public virtual VolumeCondition Condition => VolumeCondition.Healthy;

    public ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        CheckRange(offset, buffer.Length);
        return buffer.Length == 0 ? default : ReadCoreAsync(offset, buffer, cancellationToken);
    }

    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, BlockWriteFlags flags = BlockWriteFlags.None, CancellationToken cancellationToken = default)
    {
        CheckWritable();
        CheckRange(offset, data.Length);
        if (data.Length == 0)
        {
            return (flags & BlockWriteFlags.Fua) != 0 ? FlushCoreAsync(cancellationToken) : default;
        }

        return WriteCoreAsync(offset, data, (flags & BlockWriteFlags.Fua) != 0, cancellationToken);
    }

    public ValueTask FlushAsync(CancellationToken cancellationToken = default) =>
        IsReadOnly ? default : FlushCoreAsync(cancellationToken);

    public ValueTask DiscardAsync(long offset, long length, CancellationToken cancellationToken = default)
    {
        CheckWritable();
        CheckRange(offset, length);
        return length == 0 ? default : DiscardCoreAsync(offset, length, cancellationToken);
    }

    public ValueTask WriteZeroesAsync(long offset, long length, CancellationToken cancellationToken = default)
    {
        CheckWritable();
        CheckRange(offset, length);
        return length == 0 ? default : WriteZeroesCoreAsync(offset, length, cancellationToken);
    }

    /// <summary>False unless the store can move data straight to and from a request's registered pages (zero copy; the file store with O_DIRECT).</summary>
    public virtual bool ServesRegisteredBuffers => false;

    public bool TryReadRegistered(long offset, RegisteredBuffer buffer, CancellationToken cancellationToken, out ValueTask pending)
    {
        CheckRange(offset, buffer.Length);
        return TryReadRegisteredCore(offset, buffer, cancellationToken, out pending);
    }

    public bool TryWriteRegistered(long offset, RegisteredBuffer buffer, BlockWriteFlags flags, CancellationToken cancellationToken, out ValueTask pending)
    {
        CheckWritable();
        CheckRange(offset, buffer.Length);
        return TryWriteRegisteredCore(offset, buffer, (flags & BlockWriteFlags.Fua) != 0, cancellationToken, out pending);
    }

    public abstract ValueTask DisposeAsync();

    /// <summary>
    /// Serves <paramref name="sizeBytes"/> from now on, after the store grew the volume
    /// (ControllerExpandVolume) while it is open here; the caller then grows the device (UPDATE_SIZE).
    /// False when this store picks up a new size only when the volume is opened again.
    /// </summary>
    public virtual ValueTask<bool> TryGrowAsync(long sizeBytes, CancellationToken cancellationToken = default) =>
        ValueTask.FromResult(false);

    /// <summary>For stores that can grow an open volume: requests up to <paramref name="sizeBytes"/> are accepted from now on.</summary>
    protected void ServeUpTo(long sizeBytes)
    {
        if (sizeBytes < SizeBytes || sizeBytes % StoreLimits.IoAlignment != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(sizeBytes), $"volume '{VolumeId}' can only grow, to a multiple of {StoreLimits.IoAlignment} bytes (now {SizeBytes}, asked {sizeBytes})");
        }

        Volatile.Write(ref _sizeBytes, sizeBytes);
    }

    protected abstract ValueTask ReadCoreAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken);

    protected abstract ValueTask WriteCoreAsync(long offset, ReadOnlyMemory<byte> data, bool fua, CancellationToken cancellationToken);

    protected abstract ValueTask FlushCoreAsync(CancellationToken cancellationToken);

    protected abstract ValueTask DiscardCoreAsync(long offset, long length, CancellationToken cancellationToken);

    protected abstract ValueTask WriteZeroesCoreAsync(long offset, long length, CancellationToken cancellationToken);

    /// <summary>A store that sets <see cref="ServesRegisteredBuffers"/> starts a zero-copy read here; false lets the engine copy instead.</summary>
    protected virtual bool TryReadRegisteredCore(long offset, RegisteredBuffer buffer, CancellationToken cancellationToken, out ValueTask pending)
    {
        pending = default;
        return false;
    }

    /// <summary>A store that sets <see cref="ServesRegisteredBuffers"/> starts a zero-copy write here; false lets the engine copy instead.</summary>
    protected virtual bool TryWriteRegisteredCore(long offset, RegisteredBuffer buffer, bool fua, CancellationToken cancellationToken, out ValueTask pending)
    {
        pending = default;
        return false;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void CheckRange(long offset, long length)
    {
        if (((offset | length) & (StoreLimits.IoAlignment - 1)) != 0 || offset < 0 || length < 0 || offset > SizeBytes - length)
        {
            ThrowBadRange(offset, length);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void CheckWritable()
    {
        if (IsReadOnly)
        {
            ThrowReadOnly();
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void ThrowBadRange(long offset, long length)
    {
        var reason = ((offset | length) & (StoreLimits.IoAlignment - 1)) != 0
            ? $"offset and length must be multiples of {StoreLimits.IoAlignment}"
            : $"the range must lie inside the volume (size {SizeBytes})";
        throw new BlockBackendException(BlockBackendException.EINVAL, $"volume '{VolumeId}': bad range offset={offset} length={length}: {reason}");
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void ThrowReadOnly() =>
        throw new BlockBackendException(BlockBackendException.EROFS, $"volume '{VolumeId}' is open read-only");
}
