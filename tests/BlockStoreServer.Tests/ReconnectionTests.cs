using UblkCsi.GrpcEndpoints;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text.RegularExpressions;
using UblkCsi.BlockStoreServer.Tests.Support;
using UblkCsi.Engine;
using UblkCsi.GrpcHosting;
using UblkCsi.Stores;
using UblkCsi.Stores.Rpc;

namespace UblkCsi.BlockStoreServer.Tests;

/// <summary>
/// Dropped connections and server restarts: every write is either retried to success or reported
/// failed, and a write reported done is always on the server.
/// </summary>
public sealed class ReconnectionTests
{
    private const int BlockSize = 64 * 1024;

    [Fact]
    public async Task WritesInFlightWhenTheServerIsKilledAreRetriedAfterItsRestartAndNoneIsFalselyAcknowledged()
    {
        var root = TestPaths.NewDirectory("kill");
        var server = await ServerProcess.StartOnFreePortsAsync("--root", root);
        var (port, args) = (server.Port, server.Arguments);
        try
        {
            await using var store = new RpcStore(new RpcStoreOptions(GrpcEndpoint.Tcp("127.0.0.1", port)));
            const int writers = 4;
            const int blocksPerWriter = 160; // 10 MiB per writer
            const long region = (long)blocksPerWriter * BlockSize;
            await store.CreateVolumeAsync(new CreateVolumeRequest("survivor", writers * region));
            await using var volume = await store.OpenVolumeAsync("survivor");

            var acknowledged = new ConcurrentDictionary<long, int>(); // offset -> seed of its last acknowledged write
            var failed = new ConcurrentBag<(long Offset, Exception Error)>();
            var spans = new ConcurrentBag<(long Started, long Finished)>();
            var completed = 0;
            var stop = false;

            // The writers keep writing (each sweeps its region again and again, every pass with new
            // patterns) until told to stop, so writes are in flight whenever the server dies however fast
            // the data path is. One writer's writes to one offset are sequential, so the last
            // acknowledged pattern of each offset is what the server must hold.
            var writing = Enumerable.Range(0, writers).Select(w => Task.Run(async () =>
            {
                for (var pass = 0; !Volatile.Read(ref stop); pass++)
                {
                    for (var b = 0; b < blocksPerWriter && !Volatile.Read(ref stop); b++)
                    {
                        var offset = (w * region) + ((long)b * BlockSize);
                        var seed = HashCode.Combine(w, b, pass);
                        var started = Stopwatch.GetTimestamp();
                        try
                        {
                            await volume.WriteAsync(offset, Pattern(seed));
                            acknowledged[offset] = seed;
                        }
                        catch (BlockBackendException e)
                        {
                            failed.Add((offset, e));
                        }

                        spans.Add((started, Stopwatch.GetTimestamp()));
                        Interlocked.Increment(ref completed);
                    }
                }
            })).ToArray();

            await WaitUntilAsync(() => Volatile.Read(ref completed) >= 200, "200 writes before the kill");
            var killedAt = Stopwatch.GetTimestamp();
            server.KillHard();
            await Task.Delay(300);
            server.Dispose();
            server = await ServerProcess.StartAsync(args);
            var afterRestart = Volatile.Read(ref completed);
            await WaitUntilAsync(() => Volatile.Read(ref completed) >= afterRestart + 200, "200 writes after the restart");
            Volatile.Write(ref stop, true);
            await Task.WhenAll(writing).WaitAsync(TimeSpan.FromSeconds(120));

            // The drop happened under load: some writes were in flight across it.
            Assert.Contains(spans, s => s.Started < killedAt && s.Finished > killedAt);

            // The server was back well within the retry budget: every write was retried to success.
            Assert.Empty(failed);

            // ... and the volume's metrics say so: its lost connections were replaced and the writes in flight sent again.
            var metrics = ((IStoreVolumeMetrics)volume).ReadMetrics().Values.ToDictionary(v => v.Name, v => v.Value);
            Assert.True(metrics["rpc_reconnects_total"] >= 1, $"rpc_reconnects_total {metrics["rpc_reconnects_total"]} after a server kill under writes");
            Assert.True(metrics["rpc_retries_total"] >= 1, $"rpc_retries_total {metrics["rpc_retries_total"]}, but writes were in flight across the kill");

            // Every acknowledged write is on the server, read back through the restarted process.
            var read = new byte[BlockSize];
            foreach (var (offset, seed) in acknowledged)
            {
                await volume.ReadAsync(offset, read);
                Assert.True(Pattern(seed).AsSpan().SequenceEqual(read), $"acknowledged write at {offset} is not on the server");
            }
        }
        finally
        {
            server.Dispose();
        }
    }

    [Fact]
    public async Task ARetryAfterALostAcknowledgementWaitsForTheFirstAttemptThenSucceeds()
    {
        var store = new FaultyStore(StoreRegistry.Open("memory", new Dictionary<string, string>()));
        // The data path (NBD) reaches the server through a proxy that can drop every connection.
        var dataPort = TestPaths.FreePort();
        await using var proxy = new DroppingProxy(dataPort);
        await using var host = await ServiceHost.StartAsync(store, dataPort: dataPort, advertisedDataPort: proxy.Port);
        await using var client = new RpcStore(new RpcStoreOptions(host.Endpoint));
        await client.CreateVolumeAsync(new CreateVolumeRequest("held", 4 << 20));
        await using var volume = await client.OpenVolumeAsync("held");

        // The first attempt of the write at 1 MiB enters the store and is held there.
        var firstAttemptEntered = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var releaseFirstAttempt = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var attempts = 0;
        store.BeforeWrite = offset =>
        {
            if (offset == 1 << 20 && Interlocked.Increment(ref attempts) == 1)
            {
                firstAttemptEntered.SetResult();
                return releaseFirstAttempt.Task;
            }

            return Task.CompletedTask;
        };

        var data = Pattern(7, 128 * 1024);
        var write = volume.WriteAsync(1 << 20, data).AsTask();
        await firstAttemptEntered.Task.WaitAsync(TimeSpan.FromSeconds(10));

        // The network fails: the client never hears back from the first attempt and sends it again.
        proxy.DropAll();
        await WaitUntilAsync(() => proxy.Accepted >= 2, "the client reconnected");

        // The retry must not overtake the first attempt, which is still running in the server.
        await Task.Delay(600);
        Assert.False(write.IsCompleted, "the write was reported done while its first attempt was still running in the server");
        Assert.Equal(1, Volatile.Read(ref attempts));

        releaseFirstAttempt.SetResult();
        await write.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(2, Volatile.Read(ref attempts));

        // The server held the reconnect back until the first attempt finished (it arrived well before the release).
        var waited = Regex.Match(host.Logs.Text, @"reconnected; the connection it replaces was stopped after (\d+) ms");
        Assert.True(waited.Success, "the reconnect was not ordered by the server:\n" + host.Logs.Text);
        Assert.True(int.Parse(waited.Groups[1].Value) >= 300, $"the retry waited only {waited.Groups[1].Value} ms");

        var read = new byte[data.Length];
        await volume.ReadAsync(1 << 20, read);
        Assert.Equal(data, read);
    }

    [Fact]
    public async Task AWriteIsReportedFailedWhenTheServerDoesNotComeBack()
    {
        var root = TestPaths.NewDirectory("gone");
        var server = await ServerProcess.StartOnFreePortsAsync("--root", root);
        var port = server.Port;
        try
        {
            var retry = new RpcRetryPolicy(4, TimeSpan.FromMilliseconds(20), TimeSpan.FromMilliseconds(100));
            await using var store = new RpcStore(new RpcStoreOptions(GrpcEndpoint.Tcp("127.0.0.1", port), Retry: retry));
            await store.CreateVolumeAsync(new CreateVolumeRequest("orphan", 1 << 20));
            await using var volume = await store.OpenVolumeAsync("orphan");
            await volume.WriteAsync(0, Pattern(1, 4096));

            server.KillHard();
            var clock = Stopwatch.StartNew();
            var e = await Assert.ThrowsAsync<BlockBackendException>(async () => await volume.WriteAsync(4096, Pattern(2, 4096)));

            Assert.Equal(BlockBackendException.EIO, e.Errno);
            // The data path's reconnects have the retry policy's budget: 20 + 40 + 80 ms of backoff.
            Assert.Contains("unreachable for", e.Message);
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), $"giving up took {clock.Elapsed}");
            var control = await Assert.ThrowsAsync<StoreException>(() => store.GetVolumeAsync("orphan"));
            Assert.Equal(StoreErrorCode.Unavailable, control.Code);
        }
        finally
        {
            server.Dispose();
        }
    }

    [Fact]
    public async Task SigtermStopsTheProcessGracefullyWithExit0()
    {
        var root = TestPaths.NewDirectory("term");
        using var server = await ServerProcess.StartOnFreePortsAsync("--root", root);
        await using (var store = new RpcStore(new RpcStoreOptions(GrpcEndpoint.Tcp("127.0.0.1", server.Port))))
        {
            await store.CreateVolumeAsync(new CreateVolumeRequest("term", 1 << 20));
            await using var volume = await store.OpenVolumeAsync("term");
            await volume.WriteAsync(0, Pattern(3, 8192));
        }

        Assert.Equal(0, await server.TerminateAsync());
        Assert.Contains("stopped; open volumes flushed and closed", server.Output);
    }

    private static byte[] Pattern(int seed, int length = BlockSize)
    {
        var data = new byte[length];
        new Random(seed).NextBytes(data);
        return data;
    }

    private static async Task WaitUntilAsync(Func<bool> condition, string what)
    {
        var deadline = DateTime.UtcNow.AddSeconds(20);
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, $"timed out waiting until {what}");
            await Task.Delay(10);
        }
    }
}
