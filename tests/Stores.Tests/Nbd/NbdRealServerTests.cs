using System.Diagnostics;
using UblkCsi.Engine;
using UblkCsi.Stores.Nbd;
using UblkCsi.Stores.Tests.Conformance;

namespace UblkCsi.Stores.Tests.Nbd;

/// <summary>The nbd store against nbdkit (memory and file plugins) and qemu-nbd (a qcow2 image).</summary>
public sealed class NbdRealServerTests
{
    private const long MiB = 1 << 20;

    [NbdkitFact]
    public async Task NbdkitMemoryExportNegotiatesFeaturesAndMatchesTheModel()
    {
        await using var server = await NbdServerProcess.StartNbdkitAsync("memory", "size=32M");
        await using var volume = (NbdVolume)await OpenStoreVolumeAsync(server, "any");
        var export = volume.Export;
        Assert.Equal(32 * MiB, export.SizeBytes);
        Assert.True(export.StructuredReplies, export.ToString());
        Assert.True(export.CanFlush && export.CanFua && export.CanTrim && export.CanWriteZeroes && export.CanMultiConn, export.ToString());
        var features = volume.Info.Features;
        Assert.Equal(BlockBackendFeatures.VolatileCache | BlockBackendFeatures.Fua | BlockBackendFeatures.Discard | BlockBackendFeatures.WriteZeroes, features);
        // nbdkit takes 32 MiB payloads: the device is asked for 1 MiB requests, one NBD command each.
        Assert.True(export.MaximumPayload >= MiB, export.ToString());
        Assert.Equal((int)MiB, volume.Info.PreferredMaxIoBytes);
        await NbdDataPathChecks.RandomOperationsMatchModelAsync(volume, seed: 1, size: 32 * MiB);
        await NbdDataPathChecks.ConcurrentWritersAllLandAsync(volume);
        Assert.InRange(volume.Client.MaxConnections, 2, NbdClientOptions.DefaultMaxConnections);
        Assert.False(volume.Condition.Abnormal, volume.Condition.Message);
    }

    [NbdkitFact]
    public async Task PlainConnectionsAreNeverHandedToTheRuntimesSocketEngine()
    {
        // Registered (in the runtime's epoll set), a socket wakes the engine's thread and a thread-pool
        // worker at every burst of bytes, with no .NET operation pending: CPU that the queue rings'
        // own receives would pay for a second time.
        await using var server = await NbdServerProcess.StartNbdkitAsync("memory", "size=32M");
        await using var volume = (NbdVolume)await OpenStoreVolumeAsync(server, "any");
        await NbdDataPathChecks.ConcurrentWritersAllLandAsync(volume);
        await NbdDataPathChecks.RandomOperationsMatchModelAsync(volume, seed: 3, size: 8 * MiB);
        var sockets = volume.Client.LiveSocketDescriptors();
        Assert.NotEmpty(sockets);

        // The control: a socket that waited for an asynchronous accept is watched, so the check sees registrations.
        using var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        var accept = listener.AcceptSocketAsync();
        using var client = new System.Net.Sockets.Socket(System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
        client.Connect((System.Net.IPEndPoint)listener.LocalEndpoint);
        using var accepted = await accept;

        var watched = EpollWatchedDescriptors();
        Assert.Contains((int)listener.Server.Handle, watched);
        Assert.All(sockets, socket => Assert.DoesNotContain(socket, watched));
    }

    /// <summary>Every descriptor an epoll set of this process watches ("tfd:" lines of the set's fdinfo).</summary>
    private static HashSet<int> EpollWatchedDescriptors()
    {
        var watched = new HashSet<int>();
        foreach (var link in Directory.GetFiles("/proc/self/fd"))
        {
            string? target;
            try
            {
                target = new FileInfo(link).LinkTarget;
            }
            catch (IOException)
            {
                continue; // closed meanwhile
            }

            if (target != "anon_inode:[eventpoll]" || !File.Exists($"/proc/self/fdinfo/{Path.GetFileName(link)}"))
            {
                continue;
            }

            foreach (var line in File.ReadLines($"/proc/self/fdinfo/{Path.GetFileName(link)}"))
            {
                var fields = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                if (fields.Length > 1 && fields[0] == "tfd:")
                {
                    watched.Add(int.Parse(fields[1], System.Globalization.CultureInfo.InvariantCulture));
                }
            }
        }

        return watched;
    }

    [NbdkitFact]
    public async Task NbdkitFileExportKeepsFlushedDataAcrossReopenAndServerRestart()
    {
        var dir = TempDirectory.Create("nbd-file");
        try
        {
            var image = Path.Combine(dir, "disk.img");
            using (var f = File.Create(image))
            {
                f.SetLength(24 * MiB);
            }

            await using var server = await NbdServerProcess.StartNbdkitAsync("file", image);
            byte[] model;
            await using (var volume = await OpenStoreVolumeAsync(server, "disk"))
            {
                await NbdDataPathChecks.EdgesAsync(volume);
                model = new byte[24 * MiB];
                await volume.ReadAsync(0, model);
                var random = await NbdDataPathChecks.RandomOperationsMatchModelAsync(volume, seed: 2, size: 8 * MiB);
                random.CopyTo(model, 0);
            }

            server.Kill();
            await server.RestartAsync();
            await using var again = await OpenStoreVolumeAsync(server, "disk");
            await NbdDataPathChecks.AssertContentAsync(again, model, "after a server restart");
            Assert.Equal(model.AsSpan(0, (int)(8 * MiB)).ToArray(), File.ReadAllBytes(image).AsSpan(0, (int)(8 * MiB)).ToArray());
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [QemuNbdFact]
    public async Task QemuNbdQcow2ImageOverAUnixSocketThroughTheSpec()
    {
        var dir = TempDirectory.Create("nbd-qemu");
        try
        {
            var image = Path.Combine(dir, "disk.qcow2");
            await NbdServerProcess.CreateQcow2Async(image, "16M");
            var socket = Path.Combine(dir, "nbd.sock");
            await using var server = await NbdServerProcess.StartQemuNbdAsync(image, "qcow2", "vol1", socket);

            var spec = StoreSpec.Parse($"nbd+unix:///vol1?socket={socket}");
            Assert.Equal("nbd+unix", spec.Type);
            byte[] model;
            await using (var volume = await spec.OpenAsync())
            {
                Assert.Equal(16 * MiB, volume.Info.SizeBytes);
                await NbdDataPathChecks.EdgesAsync(volume);
                model = await NbdDataPathChecks.RandomOperationsMatchModelAsync(volume, seed: 3, size: 16 * MiB, operations: 150);
            }

            await using var again = await StoreSpec.Parse(spec.ToString()).OpenAsync(new StoreSpecOpenOptions(ReadOnly: true));
            await NbdDataPathChecks.AssertContentAsync(again, model, "reopened read-only");
            var refused = await Assert.ThrowsAsync<BlockBackendException>(async () => await again.WriteAsync(0, new byte[4096]));
            Assert.Equal(BlockBackendException.EROFS, refused.Errno);

            var missing = await Assert.ThrowsAsync<NbdRefusedException>(() => StoreSpec.Parse($"nbd+unix:///nope?socket={socket}").OpenAsync());
            Assert.Equal(StoreErrorCode.NotFound, missing.Code);
            Assert.Contains("has no export 'nope'", missing.Message, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [NbdkitFact]
    public async Task ReadOnlyExportRefusesAReadWriteOpenAndServesReads()
    {
        await using var server = await NbdServerProcess.StartNbdkitAsync("-r", "memory", "size=4M");
        var store = StoreRegistry.Open("nbd", new Dictionary<string, string> { ["endpoint"] = server.Endpoint.ToString() });
        var refused = await Assert.ThrowsAsync<StoreException>(() => store.OpenVolumeAsync("x"));
        Assert.Equal(StoreErrorCode.FailedPrecondition, refused.Code);
        Assert.Contains("read-only", refused.Message, StringComparison.Ordinal);
        await using var volume = await store.OpenVolumeAsync("x", VolumeAccess.ReadOnly);
        Assert.True((volume.Info.Features & BlockBackendFeatures.ReadOnly) != 0);
        await volume.ReadAsync(0, new byte[4096]);
    }

    [NbdkitFact]
    public async Task ServerKilledAndRestartedUnderWritesLosesNothing()
    {
        var dir = TempDirectory.Create("nbd-kill");
        try
        {
            var image = Path.Combine(dir, "disk.img");
            using (var f = File.Create(image))
            {
                f.SetLength(64 * MiB);
            }

            await using var server = await NbdServerProcess.StartNbdkitAsync("file", image);
            await using var volume = (NbdVolume)await OpenStoreVolumeAsync(server, "disk");
            const int block = 64 * 1024, writers = 4, perWriter = 160;
            var completed = 0;
            var writing = Task.WhenAll(Enumerable.Range(0, writers).Select(w => Task.Run(async () =>
            {
                for (var i = 0; i < perWriter; i++)
                {
                    var offset = (((long)w * perWriter) + i) * block;
                    await volume.WriteAsync(offset, NbdDataPathChecks.Pattern((w << 16) + i, block));
                    Interlocked.Increment(ref completed);
                    await Task.Delay(2);
                }
            })));

            while (Volatile.Read(ref completed) < 40)
            {
                await Task.Delay(5);
            }

            server.Kill();
            var killedAt = completed;
            await Task.Delay(1500);
            Assert.True(volume.Condition.Abnormal, "the condition must say the server is unreachable");
            Assert.Contains("unreachable", volume.Condition.Message, StringComparison.Ordinal);
            Assert.True(completed - killedAt <= writers * 2, $"{completed - killedAt} writes completed while the server was dead");
            await server.RestartAsync();
            await writing.WaitAsync(TimeSpan.FromSeconds(30));
            await volume.FlushAsync();

            for (var w = 0; w < writers; w++)
            {
                for (var i = 0; i < perWriter; i++)
                {
                    var read = new byte[block];
                    await volume.ReadAsync((((long)w * perWriter) + i) * block, read);
                    NbdDataPathChecks.AssertSame(NbdDataPathChecks.Pattern((w << 16) + i, block), read, $"writer {w} block {i}");
                }
            }

            Assert.False(volume.Condition.Abnormal, volume.Condition.Message);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [NbdkitFact]
    public async Task ServerGoneBeyondTheBoundFailsWithEioThenRecoversWhenItReturns()
    {
        await using var server = await NbdServerProcess.StartNbdkitAsync("memory", "size=8M");
        var options = new NbdClientOptions(server.Endpoint, "")
        {
            Reconnect = NbdReconnectPolicy.Default with { GiveUpAfter = TimeSpan.FromSeconds(1.5), MaxBackoff = TimeSpan.FromMilliseconds(200) },
        };
        await using var client = await NbdClient.ConnectAsync(options);
        await client.WriteAsync(0, new byte[4096], fua: false);

        // Timed from before the kill: the client's bound runs from the drop, and waiting for the
        // daemon to be gone can itself take longer than the bound on a loaded machine.
        var watch = Stopwatch.StartNew();
        server.Kill();
        var failed = await Assert.ThrowsAsync<BlockBackendException>(async () => await client.WriteAsync(4096, new byte[4096], fua: false));
        Assert.Equal(BlockBackendException.EIO, failed.Errno);
        Assert.InRange(watch.Elapsed.TotalSeconds, 1.0, 10);
        Assert.Contains("unreachable", failed.Message, StringComparison.Ordinal);
        Assert.True(client.Condition.Abnormal);
        Assert.Contains("fails with EIO", client.Condition.Message, StringComparison.Ordinal);

        // Past the bound new requests fail at once instead of waiting again.
        watch.Restart();
        await Assert.ThrowsAsync<BlockBackendException>(async () => await client.ReadAsync(0, new byte[4096]));
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(1), $"took {watch.Elapsed}");

        await server.RestartAsync();
        var deadline = Stopwatch.StartNew();
        while (client.Condition.Abnormal && deadline.Elapsed < TimeSpan.FromSeconds(10))
        {
            await Task.Delay(50);
        }

        Assert.False(client.Condition.Abnormal, client.Condition.Message);
        await client.WriteAsync(4096, new byte[4096], fua: true);
    }


    [NbdkitFact]
    public async Task AReconnectAndTheRequestItReissuedAreCountedInTheVolumesMetrics()
    {
        // The delay filter holds every write 2 s in the server, so the write is surely unanswered when the server dies.
        await using var server = await NbdServerProcess.StartNbdkitAsync("--filter=delay", "memory", "size=16M", "wdelay=2");
        await using var volume = (NbdVolume)await OpenStoreVolumeAsync(server, "any");
        double Metric(string name) => volume.ReadMetrics().Values.Single(v => v.Name == name).Value;
        Assert.Equal(0, Metric("nbd_reconnects_total"));
        Assert.Equal(0, Metric("nbd_reissued_requests_total"));

        var write = volume.WriteAsync(0, NbdDataPathChecks.Pattern(7, 4096)).AsTask();
        await Task.Delay(500);
        Assert.False(write.IsCompleted, "the delayed write must still be in the server");
        server.Kill();
        await server.RestartAsync();
        await write.WaitAsync(TimeSpan.FromSeconds(30));

        Assert.Equal(1, Metric("nbd_reissued_requests_total"));
        Assert.Equal(1, Metric("nbd_reconnects_total"));
    }

    internal static async Task<IBlockBackend> OpenStoreVolumeAsync(NbdServerProcess server, string volumeId)
    {
        try
        {
            return await StoreRegistry.Open("nbd", new Dictionary<string, string> { ["endpoint"] = server.Endpoint.ToString() }).OpenVolumeAsync(volumeId);
        }
        catch (StoreException e)
        {
            throw new InvalidOperationException(e.Message, e);
        }
    }
}
