using System.Net.Sockets;

namespace UblkCsi.Stores.Nbd;

/// <summary>
/// The stream of a plain (not TLS) connection: its asynchronous calls run synchronously, on the
/// calling thread. They block during the negotiation; afterwards the socket is non-blocking and the
/// stream carries only the soft disconnect at close, whose failure is tolerated (the data path sends
/// and receives on the socket itself). Why: the first asynchronous operation .NET has to wait for registers
/// the socket with the runtime's socket engine (epoll, edge-triggered, for reads and writes), and the
/// registration lasts until the socket closes. Every burst of bytes arriving then wakes the engine's
/// thread and queues a thread-pool work item, even with no .NET operation pending: measured under
/// 1 MiB reads, three work items per reply, and as much CPU off the queue threads as on them, while
/// the queue rings receive every byte themselves. So a plain connection is connected and negotiated
/// with blocking calls on a thread of its own (<see cref="NbdClient"/>), and its receive loop, while
/// it has no queue thread, waits in poll(2) on a reader thread (<see cref="NbdSocketReceiver"/>).
/// TLS connections keep the runtime's asynchronous stream: they never move to queue threads.
/// </summary>
internal sealed class NbdBlockingStream(Socket socket) : NetworkStream(socket, ownsSocket: false)
{
    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        return new ValueTask<int>(Read(buffer.Span));
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        Write(buffer.Span);
        return default;
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override Task FlushAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
