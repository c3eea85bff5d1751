using System.Buffers.Binary;
using System.Diagnostics;
using UblkCsi.Engine;
using UblkCsi.Stores.Nbd;

namespace UblkCsi.Stores.Tests.Nbd;

/// <summary>
/// A broken or hostile server must give the caller a clear error within the configured bounds:
/// never a crash, never a hang. Every test is bounded by <see cref="Limit"/>.
/// </summary>
public sealed class NbdMalformedServerTests
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task GarbageGreetingIsNotAnNbdServer()
    {
        await using var server = new FakeNbdServer(async s => await s.WriteAsync("HTTP/1.1 400 Bad Request\r\n\r\n"u8.ToArray()));
        var e = await Assert.ThrowsAsync<StoreException>(() => NbdClient.ConnectAsync(Fast(server)).WaitAsync(Limit));
        Assert.Equal(StoreErrorCode.Unavailable, e.Code);
        Assert.Contains("is not an NBD server", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task SilentServerEndsInAHandshakeTimeout()
    {
        await using var server = new FakeNbdServer(async s => await Task.Delay(Timeout.Infinite, CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(20)));
        var watch = Stopwatch.StartNew();
        var e = await Assert.ThrowsAsync<StoreException>(() => NbdClient.ConnectAsync(Fast(server) with { HandshakeTimeout = TimeSpan.FromSeconds(1) }).WaitAsync(Limit));
        Assert.Contains("no complete NBD negotiation within 1 s", e.Message, StringComparison.Ordinal);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(10), $"took {watch.Elapsed}");
    }

    [Fact]
    public async Task OversizedOptionReplyIsRefusedBeforeReadingIt()
    {
        await using var server = new FakeNbdServer(async s =>
        {
            await s.WriteAsync(Greeting());
            await FakeNbdServer.ReadExactAsync(s, 4);
            await FakeNbdServer.ReadExactAsync(s, 16);
            await FakeNbdServer.OptionReplyAsync(s, 8, 1, [], claimedLength: 0xFFFFFFF0);
            await Task.Delay(TimeSpan.FromSeconds(5));
        });
        var e = await Assert.ThrowsAsync<StoreException>(() => NbdClient.ConnectAsync(Fast(server)).WaitAsync(Limit));
        Assert.Contains("announced an option reply of 4294967280 bytes", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task UnknownExportIsNotFoundWithTheServersMessage()
    {
        await using var server = new FakeNbdServer(async s =>
        {
            await s.WriteAsync(Greeting());
            await FakeNbdServer.ReadExactAsync(s, 4);
            for (var i = 0; i < 2; i++)
            {
                var header = await FakeNbdServer.ReadExactAsync(s, 16);
                var option = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(8));
                await FakeNbdServer.ReadExactAsync(s, (int)BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(12)));
                await FakeNbdServer.OptionReplyAsync(s, option, option == 8 ? 1u : 0x80000006u, option == 8 ? [] : "no such export\n"u8.ToArray());
            }
        });
        var e = await Assert.ThrowsAsync<NbdRefusedException>(() => NbdClient.ConnectAsync(Fast(server, "vol9")).WaitAsync(Limit));
        Assert.Equal(StoreErrorCode.NotFound, e.Code);
        Assert.Contains("has no export 'vol9' (server said: no such export?)", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public async Task FuzzedHandshakesEndInAClearErrorOrAValidExport(int seedBlock)
    {
        for (var seed = seedBlock * 25; seed < (seedBlock + 1) * 25; seed++)
        {
            var random = new Random(seed);
            await using var server = new FakeNbdServer(async s =>
            {
                // A correct negotiation recorded into memory, mutated (flipped bytes, truncated, garbage appended), then replayed.
                var recorded = new MemoryStream();
                var script = new ScriptedStream(recorded);
                await FakeNbdServer.HandshakeAsync(script, size: (ulong)random.Next(0, 1 << 20) * 512, flags: (ushort)random.Next(0, 1 << 12), structured: random.Next(2) == 0);
                var bytes = recorded.ToArray();
                for (var flips = random.Next(1, 4); flips > 0; flips--)
                {
                    bytes[random.Next(bytes.Length)] ^= (byte)random.Next(1, 256);
                }

                var cut = random.Next(bytes.Length + 1);
                await s.WriteAsync(bytes.AsMemory(0, cut));
                if (random.Next(2) == 0)
                {
                    var garbage = new byte[random.Next(1, 64)];
                    random.NextBytes(garbage);
                    await s.WriteAsync(garbage);
                }

                // Half of them go silent instead of hanging up: the handshake timeout must end those.
                if (random.Next(2) == 0)
                {
                    await Task.Delay(TimeSpan.FromSeconds(3));
                }

                // Drain whatever the client sends so it is never blocked on a full socket.
                var sink = new byte[4096];
                using var drain = new CancellationTokenSource(TimeSpan.FromMilliseconds(200));
                try
                {
                    while (await s.ReadAsync(sink, drain.Token) > 0)
                    {
                    }
                }
                catch (OperationCanceledException)
                {
                }
            });
            try
            {
                await using var client = await NbdClient.ConnectAsync(Fast(server) with { HandshakeTimeout = TimeSpan.FromSeconds(1) }).WaitAsync(Limit);
                // A mutation that still parses: the export must be one a device can be.
                Assert.True(client.Export.UsableSizeBytes > 0);
            }
            catch (StoreException)
            {
                // The clear error this test wants (Unavailable with what broke, or a refusal).
            }
        }
    }

    [Fact]
    public async Task ReplyWithAWrongHandleFailsTheRequestNamingIt()
    {
        await using var server = new FakeNbdServer(async s =>
        {
            await FakeNbdServer.HandshakeAsync(s, 1 << 20, structured: false);
            var request = await FakeNbdServer.ReadRequestAsync(s);
            await FakeNbdServer.SimpleReplyAsync(s, request.Handle ^ 0x5A5A, 0);
            await Task.Delay(TimeSpan.FromSeconds(5));
        });
        await using var client = await NbdClient.ConnectAsync(Fast(server));
        var e = await Assert.ThrowsAsync<BlockBackendException>(async () => await client.WriteAsync(0, new byte[4096], fua: false).AsTask().WaitAsync(Limit));
        Assert.Equal(BlockBackendException.EIO, e.Errno);
        Assert.Contains("which names no request in flight", e.Message, StringComparison.Ordinal);
        Assert.True(server.Connections >= 2, "the request must have been sent again on a new connection first");
    }

    [Fact]
    public async Task ShortReadFailsWithEioAndNeverHangs()
    {
        await using var server = new FakeNbdServer(async s =>
        {
            await FakeNbdServer.HandshakeAsync(s, 1 << 20);
            var request = await FakeNbdServer.ReadRequestAsync(s);
            var partial = new byte[8 + 100];
            BinaryPrimitives.WriteUInt64BigEndian(partial, request.Offset);
            await FakeNbdServer.ChunkAsync(s, request.Handle, 1, true, partial, claimedLength: 8 + request.Length);
            // ... and hang up with 3996 bytes missing.
        });
        await using var client = await NbdClient.ConnectAsync(Fast(server));
        var e = await Assert.ThrowsAsync<BlockBackendException>(async () => await client.ReadAsync(0, new byte[4096]).AsTask().WaitAsync(Limit));
        Assert.Equal(BlockBackendException.EIO, e.Errno);
        Assert.Contains("closed the connection", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task OversizedDataChunkIsRefused()
    {
        await using var server = new FakeNbdServer(async s =>
        {
            await FakeNbdServer.HandshakeAsync(s, 1 << 20);
            var request = await FakeNbdServer.ReadRequestAsync(s);
            await FakeNbdServer.ChunkAsync(s, request.Handle, 1, true, new byte[8], claimedLength: 1 << 30);
            await Task.Delay(TimeSpan.FromSeconds(5));
        });
        await using var client = await NbdClient.ConnectAsync(Fast(server));
        var e = await Assert.ThrowsAsync<BlockBackendException>(async () => await client.ReadAsync(0, new byte[4096]).AsTask().WaitAsync(Limit));
        Assert.Contains("sent a data chunk of 1073741824 bytes for a Read of 4096 bytes", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task OverlappingDataChunksAreRefusedEvenWhenTheyAddUpToTheLength()
    {
        await using var server = new FakeNbdServer(async s =>
        {
            await FakeNbdServer.HandshakeAsync(s, 1 << 20);
            var request = await FakeNbdServer.ReadRequestAsync(s);
            var chunk = new byte[8 + 2048]; // offset 0, then 2048 bytes; sent twice, the second half never
            BinaryPrimitives.WriteUInt64BigEndian(chunk, request.Offset);
            await FakeNbdServer.ChunkAsync(s, request.Handle, 1, false, chunk);
            await FakeNbdServer.ChunkAsync(s, request.Handle, 1, true, chunk);
            await Task.Delay(TimeSpan.FromSeconds(5));
        });
        await using var client = await NbdClient.ConnectAsync(Fast(server));
        var e = await Assert.ThrowsAsync<BlockBackendException>(async () => await client.ReadAsync(0, new byte[4096]).AsTask().WaitAsync(Limit));
        Assert.Contains("sent a chunk for [0, +2048) that overlaps another chunk of the same READ reply", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ServerThatNeverAnswersIsDroppedAfterTheRequestTimeout()
    {
        await using var server = new FakeNbdServer(async s =>
        {
            await FakeNbdServer.HandshakeAsync(s, 1 << 20);
            await FakeNbdServer.ReadRequestAsync(s);
            await Task.Delay(TimeSpan.FromSeconds(20));
        });
        await using var client = await NbdClient.ConnectAsync(Fast(server));
        var watch = Stopwatch.StartNew();
        var e = await Assert.ThrowsAsync<BlockBackendException>(async () => await client.FlushAsync().AsTask().WaitAsync(Limit));
        Assert.Contains("did not answer a Flush", e.Message, StringComparison.Ordinal);
        Assert.InRange(watch.Elapsed.TotalSeconds, 2, 15); // 3 sends of 1 s each
    }

    [Fact]
    public async Task AServerThatKeepsAnsweringSlowlyKeepsItsConnectionHoweverLongItsQueueWaits()
    {
        // Twelve flushes at once, answered one per 300 ms: the last waits 3.6 s, past the 2 s request
        // timeout, but the server is never silent for 2 s, so nothing is sent twice (the 1.7 s between
        // a gap and the timeout absorb a loaded test host's delays).
        var connections = 0;
        var requests = 0;
        await using var server = new FakeNbdServer(async s =>
        {
            Interlocked.Increment(ref connections);
            await FakeNbdServer.HandshakeAsync(s, 1 << 20);
            while (true)
            {
                var request = await FakeNbdServer.ReadRequestAsync(s);
                Interlocked.Increment(ref requests);
                await Task.Delay(300);
                await FakeNbdServer.SimpleReplyAsync(s, request.Handle, 0);
            }
        });
        await using var client = await NbdClient.ConnectAsync(Fast(server) with { RequestTimeout = TimeSpan.FromSeconds(2) });

        await Task.WhenAll(Enumerable.Range(0, 12).Select(_ => client.FlushAsync().AsTask())).WaitAsync(Limit);

        Assert.Equal((1, 12), (Volatile.Read(ref connections), Volatile.Read(ref requests)));
    }

    [Fact]
    public async Task ARequestTheServerRefusedNeverLooksCompletedSuccessfully()
    {
        // A caller may look at IsCompletedSuccessfully before it awaits (the rpc volume does, to catch
        // a takeover): once the refusal is in, the request must not pass for a served one.
        await using var server = new FakeNbdServer(async s =>
        {
            await FakeNbdServer.HandshakeAsync(s, 1 << 20);
            while (true)
            {
                var request = await FakeNbdServer.ReadRequestAsync(s);
                await FakeNbdServer.SimpleReplyAsync(s, request.Handle, 1); // EPERM
            }
        });
        await using var client = await NbdClient.ConnectAsync(Fast(server));

        var write = client.WriteAsync(0, new byte[4096], fua: false);
        var waited = Stopwatch.StartNew();
        while (!write.IsCompleted && waited.Elapsed < Limit)
        {
            await Task.Delay(10);
        }

        Assert.True(write.IsCompleted);
        Assert.False(write.IsCompletedSuccessfully);
        var e = await Assert.ThrowsAsync<BlockBackendException>(() => write.AsTask());
        Assert.Equal(BlockBackendException.EROFS, e.Errno);
    }

    [Fact]
    public async Task AReadWhosePayloadStopsHalfWayIsReadAgainOnTheNextConnection()
    {
        // The first connection sends part of a data chunk and then nothing: the request timeout
        // fails the connection while its receive loop is still writing into the request, so the
        // loop, not the failure, hands the request back when it lets go.
        var disk = NbdDataPathChecks.Pattern(3, 1 << 20);
        await using var server = FakeNbdServer.FaultyFirstConnection(disk, async s =>
        {
            var request = await FakeNbdServer.ReadRequestAsync(s);
            var header = new byte[20];
            BinaryPrimitives.WriteUInt32BigEndian(header, 0x668e33ef);
            BinaryPrimitives.WriteUInt16BigEndian(header.AsSpan(4), 1); // done
            BinaryPrimitives.WriteUInt16BigEndian(header.AsSpan(6), 1); // offset data
            BinaryPrimitives.WriteUInt64BigEndian(header.AsSpan(8), request.Handle);
            BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(16), 8 + request.Length);
            var start = new byte[8 + 1000];
            BinaryPrimitives.WriteUInt64BigEndian(start, request.Offset);
            disk.AsSpan((int)request.Offset, 1000).CopyTo(start.AsSpan(8));
            await s.WriteAsync(header);
            await s.WriteAsync(start);
            await Task.Delay(TimeSpan.FromSeconds(20));
        });
        await using var client = await NbdClient.ConnectAsync(Fast(server));
        var read = new byte[64 * 1024];
        await client.ReadAsync(128 * 1024, read).AsTask().WaitAsync(Limit);
        NbdDataPathChecks.AssertSame(disk.AsSpan(128 * 1024, read.Length), read, "the read sent again");
        Assert.Equal(2, server.Connections);
        Assert.Equal(1, client.LiveConnections());
    }

    [Fact]
    public async Task ErrorChunksMapToErrnosWithTheServersMessage()
    {
        await using var server = new FakeNbdServer(async s =>
        {
            await FakeNbdServer.HandshakeAsync(s, 1 << 20);
            var request = await FakeNbdServer.ReadRequestAsync(s);
            var message = "disk full"u8.ToArray();
            var payload = new byte[6 + message.Length];
            BinaryPrimitives.WriteUInt32BigEndian(payload, 28); // ENOSPC
            BinaryPrimitives.WriteUInt16BigEndian(payload.AsSpan(4), (ushort)message.Length);
            message.CopyTo(payload, 6);
            await FakeNbdServer.ChunkAsync(s, request.Handle, 0x8001, true, payload);
            request = await FakeNbdServer.ReadRequestAsync(s);
            await FakeNbdServer.SimpleReplyAsync(s, request.Handle, 1); // EPERM on a write: read-only
            await Task.Delay(TimeSpan.FromSeconds(5));
        });
        await using var client = await NbdClient.ConnectAsync(Fast(server));
        var full = await Assert.ThrowsAsync<BlockBackendException>(async () => await client.WriteAsync(0, new byte[4096], fua: true).AsTask().WaitAsync(Limit));
        Assert.Equal(BlockBackendException.ENOSPC, full.Errno);
        Assert.Contains("ENOSPC: disk full", full.Message, StringComparison.Ordinal);
        var denied = await Assert.ThrowsAsync<BlockBackendException>(async () => await client.WriteAsync(4096, new byte[4096], fua: false).AsTask().WaitAsync(Limit));
        Assert.Equal(BlockBackendException.EROFS, denied.Errno);
    }

    [Fact]
    public async Task AMaximumPayloadSmallerThanAPageIsRefused()
    {
        await using var server = new FakeNbdServer(s => FakeNbdServer.HandshakeAsync(s, 1 << 20, blockSizes: (1, 512, 1024)));
        var e = await Assert.ThrowsAsync<NbdRefusedException>(() => NbdClient.ConnectAsync(Fast(server)).WaitAsync(Limit));
        Assert.Equal(StoreErrorCode.FailedPrecondition, e.Code);
        Assert.Contains("accepts at most 1024 bytes per request; a ublk device needs at least 4096", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(true, true)]
    [InlineData(false, true)]
    [InlineData(false, false)]
    public async Task CorrectServersWithAndWithoutStructuredRepliesAndOptGo(bool structured, bool knowsGo)
    {
        var disk = new byte[1 << 20];
        await using var server = new FakeNbdServer(async s =>
        {
            await FakeNbdServer.HandshakeAsync(s, (ulong)disk.Length, structured: structured, knowsGo: knowsGo);
            await FakeNbdServer.ServeMemoryAsync(s, disk, structured);
        });
        await using var client = await NbdClient.ConnectAsync(Fast(server));
        Assert.Equal(structured, client.Export.StructuredReplies);
        var data = NbdDataPathChecks.Pattern(5, 64 * 1024);
        await client.WriteAsync(8192, data, fua: false);
        var read = new byte[128 * 1024];
        read.AsSpan().Fill(0xAA);
        await client.ReadAsync(0, read);
        var expected = new byte[read.Length];
        data.CopyTo(expected, 8192);
        NbdDataPathChecks.AssertSame(expected, read, "read back (data and hole chunks)");
        await client.WriteZeroesAsync(8192, 4096, noHole: true);
        await client.ReadAsync(8192, read.AsMemory(0, 4096));
        Assert.False(read.AsSpan(0, 4096).ContainsAnyExcept((byte)0));
    }

    // One connection: each connection to the fake server replays its script from the start.
    // 5 s to negotiate: generous for a loaded CI machine, short next to the test limit.
    private static NbdClientOptions Fast(FakeNbdServer server, string export = "") => new(server.Endpoint, export, Connections: 1)
    {
        HandshakeTimeout = TimeSpan.FromSeconds(5),
        RequestTimeout = TimeSpan.FromSeconds(1),
        Reconnect = new NbdReconnectPolicy(TimeSpan.FromSeconds(3), TimeSpan.FromMilliseconds(20), TimeSpan.FromMilliseconds(200), MaxAttemptsPerRequest: 3),
    };

    private static byte[] Greeting()
    {
        var greeting = new byte[18];
        BinaryPrimitives.WriteUInt64BigEndian(greeting, 0x4e42444d41474943);
        BinaryPrimitives.WriteUInt64BigEndian(greeting.AsSpan(8), 0x49484156454F5054);
        BinaryPrimitives.WriteUInt16BigEndian(greeting.AsSpan(16), 1 | 2);
        return greeting;
    }

    /// <summary>Records what a server writes while answering a client that asks for structured replies and NBD_OPT_GO.</summary>
    private sealed class ScriptedStream(MemoryStream output) : Stream
    {
        private readonly byte[] _input = ClientBytes();
        private int _position;

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override int Read(byte[] buffer, int offset, int count)
        {
            var n = Math.Min(count, _input.Length - _position);
            _input.AsSpan(_position, n).CopyTo(buffer.AsSpan(offset));
            _position += n;
            return n;
        }

        public override void Write(byte[] buffer, int offset, int count) => output.Write(buffer, offset, count);

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        private static byte[] ClientBytes()
        {
            var bytes = new List<byte>();
            bytes.AddRange(new byte[] { 0, 0, 0, 3 });
            void Option(uint option, byte[] data)
            {
                var h = new byte[16];
                BinaryPrimitives.WriteUInt64BigEndian(h, 0x49484156454F5054);
                BinaryPrimitives.WriteUInt32BigEndian(h.AsSpan(8), option);
                BinaryPrimitives.WriteUInt32BigEndian(h.AsSpan(12), (uint)data.Length);
                bytes.AddRange(h);
                bytes.AddRange(data);
            }

            Option(8, []);
            Option(7, [0, 0, 0, 0, 0, 1, 0, 3]);
            return bytes.ToArray();
        }
    }
}
