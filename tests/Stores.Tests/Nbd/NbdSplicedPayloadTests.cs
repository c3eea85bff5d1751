using UblkCsi.Engine.Buffers;
using UblkCsi.Stores.Nbd;

namespace UblkCsi.Stores.Tests.Nbd;

/// <summary>
/// A large WRITE from an engine buffer goes to the socket by reference (vmsplice, then splice): the
/// socket, and on loopback the server's receive queue, hold the buffer's pages until the server
/// reads them. When the client gives up on such a write (no reply in time) and the write completes
/// on a new connection, the buffer must never be reused: a server still alive on the old connection
/// reads the payload later, and it must read what was written, never the next request's bytes.
/// </summary>
public sealed class NbdSplicedPayloadTests
{
    private const int Length = 256 * 1024;
    private const int HeaderBytes = 28;
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task APayloadADroppedConnectionMayStillReadIsNeverReused()
    {
        var disk = new byte[1 << 20];
        var readLate = new TaskCompletionSource<byte[]>(TaskCreationOptions.RunContinuationsAsynchronously);
        var readNow = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var server = FakeNbdServer.FaultyFirstConnection(disk, async s =>
        {
            // The first connection answers a first write (so the socket is in non-blocking mode, which
            // splicing needs), then takes the second write's header and leaves its payload in the
            // socket, unanswered, until the test has reused what the pool gave back.
            var warmUp = await FakeNbdServer.ReadRequestAsync(s);
            await FakeNbdServer.SimpleReplyAsync(s, warmUp.Handle, 0);
            await FakeNbdServer.ReadExactAsync(s, HeaderBytes);
            await readNow.Task;
            readLate.SetResult(await ReadWhatArrivesAsync(s, Length));
        });

        var pool = new IoBufferPool(64L << 20);
        await using var client = await NbdClient.ConnectAsync(new NbdClientOptions(server.Endpoint, "", Connections: 1)
        {
            HandshakeTimeout = TimeSpan.FromSeconds(5),
            RequestTimeout = TimeSpan.FromSeconds(1),
            Reconnect = new NbdReconnectPolicy(TimeSpan.FromSeconds(10), TimeSpan.FromMilliseconds(20), TimeSpan.FromMilliseconds(200), MaxAttemptsPerRequest: 3),
        });

        var warmUp = pool.Rent(Length);
        warmUp.GetSpan().Fill(0x11);
        await client.WriteAsync(0, warmUp.Memory[..Length], fua: false).AsTask().WaitAsync(Limit);
        Assert.True(client.PipedBytes() >= Length, "the warm-up write was not spliced: this test would prove nothing");
        pool.Return(warmUp);

        var written = pool.Rent(Length);
        var pattern = NbdDataPathChecks.Pattern(7, Length);
        pattern.CopyTo(written.GetSpan());
        // Unanswered on the first connection: dropped after the request timeout, sent again on the next.
        await client.WriteAsync(Length, written.Memory[..Length], fua: false).AsTask().WaitAsync(Limit);
        Assert.True(server.Connections >= 2, "the write was not reissued on a new connection");
        NbdDataPathChecks.AssertSame(pattern, disk.AsSpan(Length, Length).ToArray(), "the reissued write");

        // The engine gives the buffer back and serves its next request from the pool.
        pool.Return(written);
        var next = pool.Rent(Length);
        next.GetSpan().Fill(0xEE);
        Assert.Equal(1, pool.RetiredBuffers);

        readNow.SetResult();
        var late = await readLate.Task.WaitAsync(Limit);
        Assert.True(late.Length > 0, "the old connection's payload was gone before the server read it");
        NbdDataPathChecks.AssertSame(pattern.AsSpan(0, late.Length).ToArray(), late, "the payload the old connection's server read after the write completed");
        pool.Return(next);
    }

    /// <summary>Up to <paramref name="length"/> bytes, as many as the stream still delivers.</summary>
    private static async Task<byte[]> ReadWhatArrivesAsync(Stream s, int length)
    {
        var buffer = new byte[length];
        var received = 0;
        try
        {
            while (received < length)
            {
                var n = await s.ReadAsync(buffer.AsMemory(received));
                if (n == 0)
                {
                    break;
                }

                received += n;
            }
        }
        catch (IOException)
        {
            // Reset: what arrived before is what the test checks.
        }

        return buffer[..received];
    }
}
