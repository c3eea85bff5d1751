using UblkCsi.Engine;

namespace UblkCsi.Stores;

/// <summary>
/// A volume opened from a spec together with what had to be opened for it (a store, a client):
/// forwards the data path and disposes the owner after the volume.
/// </summary>
internal sealed class OwningBackend(IBlockBackend volume, IAsyncDisposable owner) : IBlockBackend
{
    public BlockBackendInfo Info => volume.Info;

    /// <summary>The wrapped volume (tests reach the store-specific type through it).</summary>
    public IBlockBackend Volume => volume;

    public ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken = default) =>
        volume.ReadAsync(offset, buffer, cancellationToken);

    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, BlockWriteFlags flags = BlockWriteFlags.None, CancellationToken cancellationToken = default) =>
        volume.WriteAsync(offset, data, flags, cancellationToken);

    public ValueTask FlushAsync(CancellationToken cancellationToken = default) => volume.FlushAsync(cancellationToken);

    public ValueTask DiscardAsync(long offset, long length, CancellationToken cancellationToken = default) =>
        volume.DiscardAsync(offset, length, cancellationToken);

    public ValueTask WriteZeroesAsync(long offset, long length, CancellationToken cancellationToken = default) =>
        volume.WriteZeroesAsync(offset, length, cancellationToken);

    public async ValueTask DisposeAsync()
    {
        try
        {
            await volume.DisposeAsync().ConfigureAwait(false);
        }
        finally
        {
            await owner.DisposeAsync().ConfigureAwait(false);
        }
    }
}
