using System.Runtime.CompilerServices;

namespace UblkCsi.Stores.Nbd;

/// <summary>
/// Buffered reads of exact lengths from a connection. Reply headers and small payloads come out of
/// one receive buffer (many replies per read system call under load); large payloads go straight
/// into the caller's destination, so a 1 MiB read is copied once, by the socket.
/// </summary>
internal sealed class NbdReceiveBuffer(Stream stream, string server, int capacity = 256 * 1024)
{
    private readonly byte[] _buffer = new byte[capacity];
    private int _start;
    private int _end;

    /// <summary>Fills <paramref name="destination"/>; completes synchronously when the bytes are already buffered.</summary>
    public ValueTask ReadExactAsync(Memory<byte> destination, CancellationToken cancellationToken)
    {
        if (_end - _start >= destination.Length)
        {
            _buffer.AsSpan(_start, destination.Length).CopyTo(destination.Span);
            _start += destination.Length;
            return default;
        }

        return ReadSlowAsync(destination, cancellationToken);
    }

    /// <summary>Reads and drops <paramref name="length"/> bytes (payloads of chunk types this client does not use).</summary>
    public async ValueTask SkipAsync(int length, byte[] scratch, CancellationToken cancellationToken)
    {
        while (length > 0)
        {
            var n = Math.Min(length, scratch.Length);
            await ReadExactAsync(scratch.AsMemory(0, n), cancellationToken).ConfigureAwait(false);
            length -= n;
        }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask ReadSlowAsync(Memory<byte> destination, CancellationToken cancellationToken)
    {
        var buffered = _end - _start;
        _buffer.AsSpan(_start, buffered).CopyTo(destination.Span);
        _start = _end = 0;
        destination = destination[buffered..];
        while (destination.Length > 0)
        {
            if (destination.Length >= _buffer.Length / 2)
            {
                var direct = await stream.ReadAsync(destination, cancellationToken).ConfigureAwait(false);
                ThrowIfClosed(direct);
                destination = destination[direct..];
                continue;
            }

            var n = await stream.ReadAsync(_buffer, cancellationToken).ConfigureAwait(false);
            ThrowIfClosed(n);
            var take = Math.Min(n, destination.Length);
            _buffer.AsSpan(0, take).CopyTo(destination.Span);
            destination = destination[take..];
            _start = take;
            _end = n;
        }
    }

    private void ThrowIfClosed(int read)
    {
        if (read == 0)
        {
            throw new IOException($"{server} closed the connection");
        }
    }
}
