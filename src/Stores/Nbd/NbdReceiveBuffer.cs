namespace UblkCsi.Stores.Nbd;

/// <summary>
/// Buffered blocking reads of exact lengths from a connection, for its receive thread. Reply headers
/// and small payloads come out of one receive buffer (many replies per read system call under load);
/// large payloads go straight into the caller's destination, so a 1 MiB read is copied once, by the
/// socket.
/// </summary>
internal sealed class NbdReceiveBuffer(Stream stream, string server, int capacity = 256 * 1024)
{
    private readonly byte[] _buffer = new byte[capacity];
    private int _start;
    private int _end;

    /// <summary>Fills <paramref name="destination"/>, blocking until the bytes are there; no system call when they are already buffered.</summary>
    public void ReadExact(Span<byte> destination)
    {
        if (_end - _start >= destination.Length)
        {
            _buffer.AsSpan(_start, destination.Length).CopyTo(destination);
            _start += destination.Length;
            return;
        }

        var buffered = _end - _start;
        _buffer.AsSpan(_start, buffered).CopyTo(destination);
        _start = _end = 0;
        destination = destination[buffered..];
        while (destination.Length > 0)
        {
            if (destination.Length >= _buffer.Length / 2)
            {
                var direct = stream.Read(destination);
                ThrowIfClosed(direct);
                destination = destination[direct..];
                continue;
            }

            var n = stream.Read(_buffer);
            ThrowIfClosed(n);
            var take = Math.Min(n, destination.Length);
            _buffer.AsSpan(0, take).CopyTo(destination);
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
