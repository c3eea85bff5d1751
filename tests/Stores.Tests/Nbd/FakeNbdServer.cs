using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using UblkCsi.GrpcEndpoints;

namespace UblkCsi.Stores.Tests.Nbd;

/// <summary>
/// A scripted NBD server on loopback for the cases real servers never produce: broken greetings,
/// replies naming unknown handles, truncated or oversized payloads, silence. Each accepted
/// connection runs the script; helpers speak the correct parts of the protocol.
/// </summary>
public sealed class FakeNbdServer : IAsyncDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly Func<NetworkStream, Task> _script;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _accepting;
    private int _connections;

    public FakeNbdServer(Func<NetworkStream, Task> script)
    {
        _script = script;
        _listener.Start();
        _accepting = AcceptAsync();
    }

    public GrpcEndpoint Endpoint => GrpcEndpoint.Tcp("127.0.0.1", ((IPEndPoint)_listener.LocalEndpoint).Port);

    public int Connections => Volatile.Read(ref _connections);

    public const ushort AllFlags = 1 | 4 | 8 | 32 | 64 | 256; // has-flags, flush, fua, trim, write-zeroes, multi-conn

    /// <summary>
    /// A fault, then recovery: the first connection runs <paramref name="firstConnection"/> after a
    /// correct handshake, every later one serves <paramref name="disk"/> correctly (structured replies).
    /// </summary>
    public static FakeNbdServer FaultyFirstConnection(byte[] disk, Func<Stream, Task> firstConnection)
    {
        var connections = 0;
        return new FakeNbdServer(async s =>
        {
            await HandshakeAsync(s, (ulong)disk.Length);
            if (Interlocked.Increment(ref connections) == 1)
            {
                await firstConnection(s);
                return;
            }

            await ServeMemoryAsync(s, disk, structured: true);
        });
    }

    /// <summary>The server half of a correct fixed-newstyle negotiation: structured replies (if <paramref name="structured"/>), NBD_OPT_GO.</summary>
    /// <param name="blockSizes">When set, NBD_OPT_GO also answers NBD_INFO_BLOCK_SIZE with these minimum, preferred and maximum sizes.</param>
    public static async Task HandshakeAsync(Stream s, ulong size, ushort flags = AllFlags, bool structured = true, bool knowsGo = true, (uint Minimum, uint Preferred, uint Maximum)? blockSizes = null)
    {
        var greeting = new byte[18];
        BinaryPrimitives.WriteUInt64BigEndian(greeting, 0x4e42444d41474943);
        BinaryPrimitives.WriteUInt64BigEndian(greeting.AsSpan(8), 0x49484156454F5054);
        BinaryPrimitives.WriteUInt16BigEndian(greeting.AsSpan(16), 1 | 2);
        await s.WriteAsync(greeting);
        await ReadExactAsync(s, 4);
        while (true)
        {
            var header = await ReadExactAsync(s, 16);
            var option = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(8));
            var data = await ReadExactAsync(s, (int)BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(12)));
            switch (option)
            {
                case 8: // STRUCTURED_REPLY
                    await OptionReplyAsync(s, option, structured ? 1u : 0x80000001u, []);
                    break;
                case 7 when knowsGo: // GO
                    var info = new byte[12];
                    BinaryPrimitives.WriteUInt64BigEndian(info.AsSpan(2), size);
                    BinaryPrimitives.WriteUInt16BigEndian(info.AsSpan(10), flags);
                    await OptionReplyAsync(s, option, 3, info);
                    if (blockSizes is { } sizes)
                    {
                        var block = new byte[14];
                        BinaryPrimitives.WriteUInt16BigEndian(block, 3);
                        BinaryPrimitives.WriteUInt32BigEndian(block.AsSpan(2), sizes.Minimum);
                        BinaryPrimitives.WriteUInt32BigEndian(block.AsSpan(6), sizes.Preferred);
                        BinaryPrimitives.WriteUInt32BigEndian(block.AsSpan(10), sizes.Maximum);
                        await OptionReplyAsync(s, option, 3, block);
                    }

                    await OptionReplyAsync(s, option, 1, []);
                    return;
                case 7:
                    await OptionReplyAsync(s, option, 0x80000001u, []);
                    break;
                case 1: // EXPORT_NAME: size, flags, no zeroes (both sides agreed)
                    var answer = new byte[10];
                    BinaryPrimitives.WriteUInt64BigEndian(answer, size);
                    BinaryPrimitives.WriteUInt16BigEndian(answer.AsSpan(8), flags);
                    await s.WriteAsync(answer);
                    return;
                default:
                    await OptionReplyAsync(s, option, 0x80000001u, []);
                    break;
            }
        }
    }

    public static async Task OptionReplyAsync(Stream s, uint option, uint type, byte[] data, uint? claimedLength = null)
    {
        var header = new byte[20];
        BinaryPrimitives.WriteUInt64BigEndian(header, 0x3e889045565a9);
        BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(8), option);
        BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(12), type);
        BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(16), claimedLength ?? (uint)data.Length);
        await s.WriteAsync(header);
        await s.WriteAsync(data);
    }

    /// <summary>Reads one request; a WRITE's payload is returned as well.</summary>
    public static async Task<(ushort Type, ushort Flags, ulong Handle, ulong Offset, uint Length, byte[] Data)> ReadRequestAsync(Stream s)
    {
        var h = await ReadExactAsync(s, 28);
        var type = BinaryPrimitives.ReadUInt16BigEndian(h.AsSpan(6));
        var length = BinaryPrimitives.ReadUInt32BigEndian(h.AsSpan(24));
        var data = type == 1 ? await ReadExactAsync(s, (int)length) : [];
        return (type, BinaryPrimitives.ReadUInt16BigEndian(h.AsSpan(4)), BinaryPrimitives.ReadUInt64BigEndian(h.AsSpan(8)), BinaryPrimitives.ReadUInt64BigEndian(h.AsSpan(16)), length, data);
    }

    public static async Task SimpleReplyAsync(Stream s, ulong handle, uint error, byte[]? data = null)
    {
        var r = new byte[16];
        BinaryPrimitives.WriteUInt32BigEndian(r, 0x67446698);
        BinaryPrimitives.WriteUInt32BigEndian(r.AsSpan(4), error);
        BinaryPrimitives.WriteUInt64BigEndian(r.AsSpan(8), handle);
        await s.WriteAsync(r);
        if (data is not null)
        {
            await s.WriteAsync(data);
        }
    }

    public static async Task ChunkAsync(Stream s, ulong handle, ushort type, bool done, byte[] payload, uint? claimedLength = null)
    {
        var r = new byte[20];
        BinaryPrimitives.WriteUInt32BigEndian(r, 0x668e33ef);
        BinaryPrimitives.WriteUInt16BigEndian(r.AsSpan(4), (ushort)(done ? 1 : 0));
        BinaryPrimitives.WriteUInt16BigEndian(r.AsSpan(6), type);
        BinaryPrimitives.WriteUInt64BigEndian(r.AsSpan(8), handle);
        BinaryPrimitives.WriteUInt32BigEndian(r.AsSpan(16), claimedLength ?? (uint)payload.Length);
        await s.WriteAsync(r);
        await s.WriteAsync(payload);
    }

    /// <summary>A correct in-memory server after the handshake: simple replies, or structured ones with data and hole chunks.</summary>
    public static async Task ServeMemoryAsync(Stream s, byte[] disk, bool structured)
    {
        while (true)
        {
            var (type, _, handle, offset, length, data) = await ReadRequestAsync(s);
            switch (type)
            {
                case 0 when structured:
                    // Two chunks, out of order: the second half first (as data or, when all zero, a hole), then the first half.
                    var half = length / 2;
                    var second = disk.AsSpan((int)(offset + half), (int)(length - half)).ToArray();
                    if (second.AsSpan().ContainsAnyExcept((byte)0))
                    {
                        var payload = new byte[8 + second.Length];
                        BinaryPrimitives.WriteUInt64BigEndian(payload, offset + half);
                        second.CopyTo(payload, 8);
                        await ChunkAsync(s, handle, 1, false, payload);
                    }
                    else
                    {
                        var hole = new byte[12];
                        BinaryPrimitives.WriteUInt64BigEndian(hole, offset + half);
                        BinaryPrimitives.WriteUInt32BigEndian(hole.AsSpan(8), length - half);
                        await ChunkAsync(s, handle, 2, false, hole);
                    }

                    var first = new byte[8 + half];
                    BinaryPrimitives.WriteUInt64BigEndian(first, offset);
                    disk.AsSpan((int)offset, (int)half).CopyTo(first.AsSpan(8));
                    await ChunkAsync(s, handle, 1, true, first);
                    break;
                case 0:
                    await SimpleReplyAsync(s, handle, 0, disk.AsSpan((int)offset, (int)length).ToArray());
                    break;
                case 1:
                    data.CopyTo(disk, (int)offset);
                    await SimpleReplyAsync(s, handle, 0);
                    break;
                case 2:
                    return;
                case 4 or 6:
                    Array.Clear(disk, (int)offset, (int)length);
                    await SimpleReplyAsync(s, handle, 0);
                    break;
                default:
                    await SimpleReplyAsync(s, handle, 0);
                    break;
            }
        }
    }

    public static async Task<byte[]> ReadExactAsync(Stream s, int length)
    {
        var buffer = new byte[length];
        await s.ReadExactlyAsync(buffer);
        return buffer;
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Stop();
        await _accepting.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        _stop.Dispose();
    }

    private async Task AcceptAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            TcpClient client;
            try
            {
                client = await _listener.AcceptTcpClientAsync(_stop.Token);
            }
            catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
            {
                return;
            }

            Interlocked.Increment(ref _connections);
            _ = Task.Run(async () =>
            {
                using (client)
                {
                    try
                    {
                        await _script(client.GetStream());
                    }
                    catch (Exception e) when (e is IOException or EndOfStreamException or SocketException or ObjectDisposedException)
                    {
                        // The client hung up: expected in these tests.
                    }
                }
            });
        }
    }
}
