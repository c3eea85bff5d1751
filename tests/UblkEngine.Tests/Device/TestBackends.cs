using UblkCsi.Engine;

namespace UblkCsi.UblkEngine.Tests.Device;

/// <summary>A backend whose every operation completes only when the test says so, on the test's thread.</summary>
internal sealed class ManualBackend(long size) : IBlockBackend
{
    private readonly Queue<(TaskCompletionSource Done, string Op, long Offset, Memory<byte> Buffer)> _pending = new();

    public BlockBackendInfo Info { get; } = new(size, 512, 4096,
        BlockBackendFeatures.VolatileCache | BlockBackendFeatures.Fua | BlockBackendFeatures.Discard | BlockBackendFeatures.WriteZeroes);

    public int PendingCount
    {
        get
        {
            lock (_pending)
            {
                return _pending.Count;
            }
        }
    }

    public CancellationToken LastToken { get; private set; }

    public ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken = default) => Enqueue("read", offset, buffer, cancellationToken);

    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, BlockWriteFlags flags = BlockWriteFlags.None, CancellationToken cancellationToken = default) =>
        Enqueue("write", offset, default, cancellationToken);

    public ValueTask FlushAsync(CancellationToken cancellationToken = default) => Enqueue("flush", 0, default, cancellationToken);

    public ValueTask DiscardAsync(long offset, long length, CancellationToken cancellationToken = default) => Enqueue("discard", offset, default, cancellationToken);

    public ValueTask WriteZeroesAsync(long offset, long length, CancellationToken cancellationToken = default) => Enqueue("zeroes", offset, default, cancellationToken);

    /// <summary>Completes the oldest pending operation (filling a read buffer with <paramref name="fill"/>) from another thread.</summary>
    public void CompleteNext(byte fill = 0, Exception? error = null)
    {
        (TaskCompletionSource Done, string Op, long Offset, Memory<byte> Buffer) next;
        lock (_pending)
        {
            next = _pending.Dequeue();
        }

        var thread = new Thread(() =>
        {
            next.Buffer.Span.Fill(fill);
            if (error == null)
            {
                next.Done.SetResult();
            }
            else
            {
                next.Done.SetException(error);
            }
        });
        thread.Start();
        thread.Join();
    }

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;

    private ValueTask Enqueue(string op, long offset, Memory<byte> buffer, CancellationToken token)
    {
        LastToken = token;
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_pending)
        {
            _pending.Enqueue((done, op, offset, buffer));
        }

        return new ValueTask(done.Task);
    }
}

/// <summary>
/// A backend that handles every write's payload as a socket holding it by reference on a dropped
/// connection would: it retires the engine buffer (<see cref="Engine.Buffers.IoBuffer.Retire"/>).
/// </summary>
internal sealed class RetiringBackend(long size) : IBlockBackend
{
    public BlockBackendInfo Info { get; } = new(size, 512, 4096, BlockBackendFeatures.None);

    public ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken = default) => ValueTask.CompletedTask;

    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, BlockWriteFlags flags = BlockWriteFlags.None, CancellationToken cancellationToken = default)
    {
        Assert.True(System.Runtime.InteropServices.MemoryMarshal.TryGetMemoryManager<byte, Engine.Buffers.IoBuffer>(data, out var buffer));
        buffer.Retire();
        return ValueTask.CompletedTask;
    }

    public ValueTask FlushAsync(CancellationToken cancellationToken = default) => ValueTask.CompletedTask;

    public ValueTask DiscardAsync(long offset, long length, CancellationToken cancellationToken = default) => ValueTask.CompletedTask;

    public ValueTask WriteZeroesAsync(long offset, long length, CancellationToken cancellationToken = default) => ValueTask.CompletedTask;

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}

/// <summary>A backend that fails every operation synchronously with the given exception.</summary>
internal sealed class FailingBackend(Exception error) : IBlockBackend
{
    public BlockBackendInfo Info { get; } = new(1 << 20, 512, 4096, BlockBackendFeatures.VolatileCache);

    public ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken = default) => throw error;

    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, BlockWriteFlags flags = BlockWriteFlags.None, CancellationToken cancellationToken = default) =>
        ValueTask.FromException(error);

    public ValueTask FlushAsync(CancellationToken cancellationToken = default) => ValueTask.FromException(error);

    public ValueTask DiscardAsync(long offset, long length, CancellationToken cancellationToken = default) => ValueTask.FromException(error);

    public ValueTask WriteZeroesAsync(long offset, long length, CancellationToken cancellationToken = default) => ValueTask.FromException(error);

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}

/// <summary>
/// A backend that says whether it serves registered buffers and, when asked to, accepts them: it
/// records every call (zero-copy or copy path) and completes at once.
/// </summary>
internal sealed class RegisteredBufferStub(bool serves, bool accepts = true, int registeredErrno = 0) : IRegisteredBufferBackend
{
    public BlockBackendInfo Info { get; } = new(1 << 20, 512, 4096, BlockBackendFeatures.Fua);

    public bool ServesRegisteredBuffers => serves;

    /// <summary>Calls in order, e.g. "registered-read 4096 slot 3 len 8192" or "copy-write 0 len 4096".</summary>
    public List<string> Calls { get; } = [];

    public bool TryReadRegistered(long offset, RegisteredBuffer buffer, CancellationToken cancellationToken, out ValueTask pending)
    {
        pending = Outcome();
        Calls.Add($"registered-read {offset} slot {buffer.Index} len {buffer.Length}");
        return accepts;
    }

    public bool TryWriteRegistered(long offset, RegisteredBuffer buffer, BlockWriteFlags flags, CancellationToken cancellationToken, out ValueTask pending)
    {
        pending = Outcome();
        Calls.Add($"registered-write {offset} slot {buffer.Index} len {buffer.Length}{(flags == BlockWriteFlags.Fua ? " fua" : string.Empty)}");
        return accepts && flags != BlockWriteFlags.Fua;
    }

    public ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        Calls.Add($"copy-read {offset} len {buffer.Length}");
        buffer.Span.Fill(0x5A);
        return default;
    }

    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, BlockWriteFlags flags = BlockWriteFlags.None, CancellationToken cancellationToken = default)
    {
        Calls.Add($"copy-write {offset} len {data.Length}");
        return default;
    }

    public ValueTask FlushAsync(CancellationToken cancellationToken = default) => default;

    public ValueTask DiscardAsync(long offset, long length, CancellationToken cancellationToken = default) => default;

    public ValueTask WriteZeroesAsync(long offset, long length, CancellationToken cancellationToken = default) => default;

    public ValueTask DisposeAsync() => default;

    private ValueTask Outcome() =>
        registeredErrno == 0 ? default : ValueTask.FromException(new BlockBackendException(registeredErrno, "registered I/O failed"));
}
