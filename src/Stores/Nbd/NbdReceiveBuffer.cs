using System.Net.Sockets;
using System.Runtime.CompilerServices;
using UblkCsi.Engine;
using UblkCsi.Linux;

namespace UblkCsi.Stores.Nbd;

/// <summary>
/// Buffered reads of exact lengths from a connection. Reply headers and small payloads come out of
/// one receive buffer (many replies per read system call under load); large payloads go straight
/// into the caller's destination, so a 1 MiB read is copied once, by the socket. While replies carry
/// large payloads, the buffer is filled a little at a time: a full fill would pull up to its capacity
/// of the next payload through the buffer, one more copy of it.
/// <para>
/// On a plain TCP socket a large payload is awaited whole: SO_RCVLOWAT makes the socket read as ready
/// only once the rest of the payload has arrived, so a 1 MiB reply costs one wake-up of the receive
/// loop instead of one per segment batch (the kernel's client blocks in one receive the same way).
/// Never on TLS: the stream may hold bytes of the socket already, and the socket might then never
/// reach the mark.
/// </para>
/// </summary>
/// <param name="source">The connection's bytes (on an engine queue thread's ring or through the stream).</param>
/// <param name="lowWaterSocket">The socket under a plain stream, for SO_RCVLOWAT; null for TLS.</param>
internal sealed class NbdReceiveBuffer(NbdSocketReceiver source, string server, Socket? lowWaterSocket, int capacity = 256 * 1024)
{
    /// <summary>Fill size after a large payload: a few replies' headers, little of a payload.</summary>
    private const int SmallFill = 4096;

    private readonly byte[] _buffer = new byte[capacity];
    private int _start;
    private int _end;
    private bool _largePayloads;
    private int _lowWater = 1;

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

    /// <summary>
    /// Fills <paramref name="length"/> bytes of a request's registered pages, <paramref name="offset"/>
    /// bytes in. What is buffered already (a few KiB at most while payloads are large) is copied in
    /// through the char device; the rest is received straight into the pages on the queue's ring.
    /// Off that queue's thread (the loop has not moved yet, or it serves another queue's request) the
    /// rest comes through this buffer and is copied in: correct, one copy more.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask ReadIntoRegisteredAsync(RegisteredBuffer target, int offset, int length, CancellationToken cancellationToken)
    {
        var buffered = Math.Min(length, _end - _start);
        if (buffered > 0)
        {
            target.CopyIn(offset, _buffer.AsSpan(_start, buffered));
            _start += buffered;
            offset += buffered;
            length -= buffered;
        }

        while (length > 0)
        {
            // The whole rest first, by the mark, then one receive takes it. The mark goes back to 1
            // before that receive: a receive that found only part of the rest (readiness also comes
            // early, under memory pressure) would wait, by the mark, for more bytes than the payload
            // has left, and those come only with a later reply (or never).
            SetLowWater(length);
            if (await source.TryWaitReadableAsync(target.Ring).ConfigureAwait(false))
            {
                SetLowWater(1);
                if (await source.TryReceiveRegisteredAsync(target, offset, length).ConfigureAwait(false))
                {
                    break;
                }
            }

            _start = _end = 0;
            var n = await source.ReadAsync(_buffer.AsMemory(0, Math.Min(length, _buffer.Length)), cancellationToken).ConfigureAwait(false);
            ThrowIfClosed(n);
            target.CopyIn(offset, _buffer.AsSpan(0, n));
            offset += n;
            length -= n;
        }

        _largePayloads = true;
        SetLowWater(1);
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
                SetLowWater(destination.Length);
                var direct = await source.ReadAsync(destination, cancellationToken).ConfigureAwait(false);
                ThrowIfClosed(direct);
                _largePayloads = true;
                destination = destination[direct..];
                continue;
            }

            // Back to any byte before a header is awaited: the next reply may be a short one.
            SetLowWater(1);

            var n = await source.ReadAsync(_buffer.AsMemory(0, _largePayloads ? Math.Max(SmallFill, destination.Length) : _buffer.Length), cancellationToken).ConfigureAwait(false);
            ThrowIfClosed(n);
            _largePayloads = false;
            var take = Math.Min(n, destination.Length);
            _buffer.AsSpan(0, take).CopyTo(destination.Span);
            destination = destination[take..];
            _start = take;
            _end = n;
        }

        SetLowWater(1);
    }

    /// <summary>SO_RCVLOWAT (the kernel caps it at half the largest receive buffer); a failure only costs wake-ups.</summary>
    private unsafe void SetLowWater(int bytes)
    {
        if (lowWaterSocket is null || bytes == _lowWater)
        {
            return;
        }

        _lowWater = bytes;
        _ = Libc.SetSockOpt(lowWaterSocket.SafeHandle, Libc.SOL_SOCKET, Libc.SO_RCVLOWAT, &bytes, sizeof(int));
    }

    private void ThrowIfClosed(int read)
    {
        if (read == 0)
        {
            throw new IOException($"{server} closed the connection");
        }
    }
}
