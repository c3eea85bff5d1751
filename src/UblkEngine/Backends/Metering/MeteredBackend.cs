using System.Runtime.CompilerServices;

namespace UblkCsi.Engine.Backends.Metering;

/// <summary>
/// Wraps a backend and records every request in an <see cref="IoMeter"/>. A request the inner backend
/// completes synchronously is recorded inline; one that completes later is awaited in a pooled async
/// method, so steady-state I/O allocates nothing either way.
/// </summary>
public sealed class MeteredBackend(IBlockBackend inner, IoMeter meter) : IRegisteredBufferBackend
{
    public IBlockBackend Inner { get; } = inner ?? throw new ArgumentNullException(nameof(inner));

    public IoMeter Meter { get; } = meter ?? throw new ArgumentNullException(nameof(meter));

    public BlockBackendInfo Info => Inner.Info;

    public ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        var started = Meter.Started();
        ValueTask pending;
        try
        {
            pending = Inner.ReadAsync(offset, buffer, cancellationToken);
        }
        catch (Exception e)
        {
            Meter.Failed(IoOperation.Read, started, ErrnoOf(e));
            throw;
        }

        return Track(IoOperation.Read, started, buffer.Length, pending);
    }

    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, BlockWriteFlags flags = BlockWriteFlags.None, CancellationToken cancellationToken = default)
    {
        var started = Meter.Started();
        ValueTask pending;
        try
        {
            pending = Inner.WriteAsync(offset, data, flags, cancellationToken);
        }
        catch (Exception e)
        {
            Meter.Failed(IoOperation.Write, started, ErrnoOf(e));
            throw;
        }

        return Track(IoOperation.Write, started, data.Length, pending);
    }

    public ValueTask FlushAsync(CancellationToken cancellationToken = default)
    {
        var started = Meter.Started();
        ValueTask pending;
        try
        {
            pending = Inner.FlushAsync(cancellationToken);
        }
        catch (Exception e)
        {
            Meter.Failed(IoOperation.Flush, started, ErrnoOf(e));
            throw;
        }

        return Track(IoOperation.Flush, started, 0, pending);
    }

    public ValueTask DiscardAsync(long offset, long length, CancellationToken cancellationToken = default)
    {
        var started = Meter.Started();
        ValueTask pending;
        try
        {
            pending = Inner.DiscardAsync(offset, length, cancellationToken);
        }
        catch (Exception e)
        {
            Meter.Failed(IoOperation.Discard, started, ErrnoOf(e));
            throw;
        }

        return Track(IoOperation.Discard, started, 0, pending);
    }

    public ValueTask WriteZeroesAsync(long offset, long length, CancellationToken cancellationToken = default)
    {
        var started = Meter.Started();
        ValueTask pending;
        try
        {
            pending = Inner.WriteZeroesAsync(offset, length, cancellationToken);
        }
        catch (Exception e)
        {
            Meter.Failed(IoOperation.WriteZeroes, started, ErrnoOf(e));
            throw;
        }

        return Track(IoOperation.WriteZeroes, started, 0, pending);
    }

    public bool ServesRegisteredBuffers => Inner is IRegisteredBufferBackend { ServesRegisteredBuffers: true };

    public bool TryReadRegistered(long offset, RegisteredBuffer buffer, CancellationToken cancellationToken, out ValueTask pending)
    {
        var started = Meter.Started();
        try
        {
            if (Inner is not IRegisteredBufferBackend registered || !registered.TryReadRegistered(offset, buffer, cancellationToken, out pending))
            {
                // Declined: the copy path that follows is metered as an ordinary read.
                Meter.Abandoned();
                pending = default;
                return false;
            }
        }
        catch (Exception e)
        {
            Meter.Failed(IoOperation.Read, started, ErrnoOf(e));
            throw;
        }

        pending = Track(IoOperation.Read, started, buffer.Length, pending);
        return true;
    }

    public bool TryWriteRegistered(long offset, RegisteredBuffer buffer, BlockWriteFlags flags, CancellationToken cancellationToken, out ValueTask pending)
    {
        var started = Meter.Started();
        try
        {
            if (Inner is not IRegisteredBufferBackend registered || !registered.TryWriteRegistered(offset, buffer, flags, cancellationToken, out pending))
            {
                Meter.Abandoned();
                pending = default;
                return false;
            }
        }
        catch (Exception e)
        {
            Meter.Failed(IoOperation.Write, started, ErrnoOf(e));
            throw;
        }

        pending = Track(IoOperation.Write, started, buffer.Length, pending);
        return true;
    }

    public ValueTask DisposeAsync() => Inner.DisposeAsync();

    /// <summary>The errno the kernel sees for a failure: the backend's own, else EIO (what the engine sends for any other exception).</summary>
    public static int ErrnoOf(Exception e) => e is BlockBackendException b ? b.Errno : BlockBackendException.EIO;

    private ValueTask Track(IoOperation operation, long started, long bytes, ValueTask pending)
    {
        if (pending.IsCompletedSuccessfully)
        {
            // Consume the result: a ValueTask over a pooled source must be observed exactly once.
            pending.GetAwaiter().GetResult();
            Meter.Completed(operation, started, bytes);
            return default;
        }

        return AwaitAsync(operation, started, bytes, pending);
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask AwaitAsync(IoOperation operation, long started, long bytes, ValueTask pending)
    {
        try
        {
            await pending.ConfigureAwait(false);
        }
        catch (Exception e)
        {
            Meter.Failed(operation, started, ErrnoOf(e));
            throw;
        }

        Meter.Completed(operation, started, bytes);
    }
}
