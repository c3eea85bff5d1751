using UblkCsi.Engine;
using UblkCsi.Stores;
using UblkCsi.Stores.S3;
using UblkCsi.Stores.Tests.Conformance;
using UblkCsi.TestSupport;
using static UblkCsi.Stores.Tests.S3.S3TestData;

namespace UblkCsi.Stores.Tests.S3;

/// <summary>What only the s3 store promises: copy-free snapshots, garbage collection, bounded dirty data, read-ahead, crash safety.</summary>
public sealed class S3StoreBehaviourTests(S3StoreFixture fixture) : IClassFixture<S3StoreFixture>
{
    private const int MiB = 1 << 20;

    [Fact]
    public async Task SnapshotsAndClonesCopyNoChunkObjects()
    {
        await using var ctx = fixture.CreateStore([]);
        var volume = await ctx.Store.CreateVolumeAsync(new CreateVolumeRequest("meta-only", 8 * MiB));
        await using (var backend = await ctx.Store.OpenVolumeAsync(volume.Id))
        {
            await backend.WriteAsync(0, Filled(4 * MiB, 1)); // chunks 0-3
            await backend.FlushAsync();
        }

        var prefix = ctx.Parameters["prefix"];
        Assert.Equal(4, await CountAsync(prefix + "/chunks/"));

        await ctx.Store.CreateSnapshotAsync(volume.Id, "meta-snap");
        await ctx.Store.CreateVolumeAsync(new CreateVolumeRequest("meta-clone", 0, VolumeSource.FromSnapshot("meta-snap")));
        await ctx.Store.CreateVolumeAsync(new CreateVolumeRequest("meta-clone2", 0, VolumeSource.FromVolume(volume.Id)));
        Assert.Equal(4, await CountAsync(prefix + "/chunks/"));

        // Writing one chunk of the source makes one new version; the snapshot keeps the old one.
        await using (var backend = await ctx.Store.OpenVolumeAsync(volume.Id))
        {
            await backend.WriteAsync(MiB, Filled(4096, 2));
            await backend.FlushAsync();
        }

        Assert.Equal(5, await CountAsync(prefix + "/chunks/"));
    }

    [Fact]
    public async Task OverwrittenVersionsAreDeletedWhenNothingReferencesThem()
    {
        await using var ctx = fixture.CreateStore([]);
        var volume = await ctx.Store.CreateVolumeAsync(new CreateVolumeRequest("rewrite", 4 * MiB));
        var prefix = ctx.Parameters["prefix"];
        await using (var backend = await ctx.Store.OpenVolumeAsync(volume.Id))
        {
            for (var round = 0; round < 5; round++)
            {
                await backend.WriteAsync(0, Filled(2 * MiB, round + 10));
                await backend.FlushAsync();
            }

            await backend.DiscardAsync(MiB, MiB);
            await backend.FlushAsync();
        }

        Assert.Equal(1, await CountAsync(prefix + "/chunks/")); // chunk 0's latest version only
    }

    [Fact]
    public async Task DeleteRemovesChunksOnlyWhenNoSnapshotNeedsThem()
    {
        await using var ctx = fixture.CreateStore([]);
        var prefix = ctx.Parameters["prefix"];
        var volume = await ctx.Store.CreateVolumeAsync(new CreateVolumeRequest("gc", 4 * MiB));
        await using (var backend = await ctx.Store.OpenVolumeAsync(volume.Id))
        {
            await backend.WriteAsync(0, Filled(3 * MiB, 3));
            await backend.FlushAsync();
            await ctx.Store.CreateSnapshotAsync(volume.Id, "gc-snap");
            await backend.WriteAsync(0, Filled(MiB, 4)); // chunk 0 gets a second version; the snapshot holds the first
            await backend.FlushAsync();
        }

        Assert.Equal(4, await CountAsync(prefix + "/chunks/"));
        Assert.True(await ctx.Store.DeleteVolumeAsync(volume.Id));
        Assert.Equal(3, await CountAsync(prefix + "/chunks/")); // what the snapshot references

        var restored = await ctx.Store.CreateVolumeAsync(new CreateVolumeRequest("gc-restored", 0, VolumeSource.FromSnapshot("gc-snap")));
        Assert.True(await ctx.Store.DeleteSnapshotAsync("gc-snap"));
        Assert.Equal(3, await CountAsync(prefix + "/chunks/")); // now the restored volume references them

        Assert.True(await ctx.Store.DeleteVolumeAsync(restored.Id));
        Assert.Equal(0, await CountAsync(prefix + "/chunks/"));
        Assert.Equal(0, await CountAsync(prefix + "/refs/"));
        Assert.Equal(0, await CountAsync(prefix + "/volumes/"));
        Assert.Equal(0, await CountAsync(prefix + "/writers/"));
    }

    [Fact]
    public async Task DirtyDataStaysBoundedAndIsUploadedBeforeFlush()
    {
        await using var ctx = fixture.CreateStore(new() { ["dirtyLimit"] = "4Mi", ["uploadConcurrency"] = "2" });
        var volume = await ctx.Store.CreateVolumeAsync(new CreateVolumeRequest("bounded-dirty", 32 * MiB));
        await using var backend = await ctx.Store.OpenVolumeAsync(volume.Id);
        var s3 = Assert.IsType<S3Volume>(backend);
        long maxDirty = 0;
        for (var i = 0; i < 32; i++)
        {
            await backend.WriteAsync((long)i * MiB, Filled(MiB, i + 1));
            maxDirty = Math.Max(maxDirty, s3.DirtyBytes);
        }

        Assert.True(maxDirty <= 5 * MiB, $"dirty bytes peaked at {maxDirty}, limit 4 MiB (+1 chunk in flight)");
        Assert.True(await CountAsync(ctx.Parameters["prefix"] + "/chunks/") >= 24, "write-back must upload before any flush");
        await backend.FlushAsync();
        Assert.Equal(0, s3.DirtyBytes);
    }

    [Fact]
    public async Task SequentialReadsFetchTheNextChunksAhead()
    {
        await using var ctx = fixture.CreateStore(new() { ["readAhead"] = "2" });
        var volume = await ctx.Store.CreateVolumeAsync(new CreateVolumeRequest("read-ahead", 8 * MiB));
        await using (var backend = await ctx.Store.OpenVolumeAsync(volume.Id))
        {
            await backend.WriteAsync(0, Filled(8 * MiB, 5));
        }

        await using var cold = await (await fixture.ReopenAsync(ctx)).OpenVolumeAsync(volume.Id);
        var s3 = Assert.IsType<S3Volume>(cold);
        var buffer = new byte[MiB / 2];
        await cold.ReadAsync(0, buffer);
        await cold.ReadAsync(MiB / 2, buffer); // sequential: chunks 1 and 2 are fetched ahead
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (!(s3.IsCached(1) && s3.IsCached(2)) && DateTime.UtcNow < deadline)
        {
            await Task.Delay(20);
        }

        Assert.True(s3.IsCached(1) && s3.IsCached(2), "chunks 1 and 2 should have been read ahead");
        Assert.False(s3.IsCached(5), "read-ahead is bounded");
    }

    [Fact]
    public async Task AfterACrashOnlyFlushedDataRemains()
    {
        await using var ctx = fixture.CreateStore([]);
        var volume = await ctx.Store.CreateVolumeAsync(new CreateVolumeRequest("crash", 4 * MiB));
        var flushed = Filled(MiB, 6);
        var abandoned = await ctx.Store.OpenVolumeAsync(volume.Id);
        await abandoned.WriteAsync(0, flushed);
        await abandoned.FlushAsync();
        await abandoned.WriteAsync(2 * MiB, Filled(4096, 7)); // never flushed; the node dies

        // A second node opens the volume from the bucket alone (separate cache directory).
        await using var other = fixture.CreateStore([]);
        var parameters = new Dictionary<string, string>(other.Parameters) { ["prefix"] = ctx.Parameters["prefix"] };
        await using var survivor = StoreRegistry.Open("s3", parameters, other.Secrets);
        await using var reopened = await survivor.OpenVolumeAsync(volume.Id);
        var read = new byte[MiB];
        await reopened.ReadAsync(0, read);
        Assert.Equal(flushed, read);
        var lost = new byte[4096];
        await reopened.ReadAsync(2 * MiB, lost);
        Assert.False(lost.AsSpan().ContainsAnyExcept((byte)0));
        GC.KeepAlive(abandoned);
    }

    [Fact]
    public async Task AWriterNeverReusesAVersionItsManifestNames()
    {
        await using var ctx = fixture.CreateStore([]);
        var store = Assert.IsType<S3Store>(ctx.Store);
        var volume = await store.CreateVolumeAsync(new CreateVolumeRequest("versions", 2 * MiB));
        var original = Filled(MiB, 8);
        await using (var backend = await store.OpenVolumeAsync(volume.Id))
        {
            await backend.WriteAsync(0, original);
            await backend.FlushAsync();
        }

        // As after a crash with an older upload still in flight: NextVersion below a named version.
        // (Each open's versions also carry its writer generation, so a reopen cannot reach them anyway.)
        var key = S3Keys.Volume(volume.Id);
        var manifest = (await store.ReadManifestAsync(key, default))!;
        manifest.NextVersion = 1;
        await store.WriteManifestAsync(key, manifest, default);
        await store.CreateSnapshotAsync(volume.Id, "versions-snap");

        await using (var backend = await store.OpenVolumeAsync(volume.Id))
        {
            await backend.WriteAsync(0, Filled(MiB, 9));
            await backend.FlushAsync();
        }

        var restored = await store.CreateVolumeAsync(new CreateVolumeRequest("versions-restored", 0, VolumeSource.FromSnapshot("versions-snap")));
        await using var view = await store.OpenVolumeAsync(restored.Id);
        var read = new byte[MiB];
        await view.ReadAsync(0, read);
        Assert.Equal(original, read);
    }

    [Fact]
    public async Task AnAttachedWriterKeepsAConcurrentExpand()
    {
        await using var ctx = fixture.CreateStore([]);
        var volume = await ctx.Store.CreateVolumeAsync(new CreateVolumeRequest("online-expand", 2 * MiB));
        var data = Filled(MiB, 10);
        await using (var backend = await ctx.Store.OpenVolumeAsync(volume.Id))
        {
            Assert.Equal(4 * MiB, await ctx.Store.ExpandVolumeAsync(volume.Id, 4 * MiB)); // while attached
            await backend.WriteAsync(0, data);
            await backend.FlushAsync(); // writes the manifest: must not shrink it back
        }

        Assert.Equal(4 * MiB, (await ctx.Store.GetVolumeAsync(volume.Id)).SizeBytes);
        await using var reopened = await ctx.Store.OpenVolumeAsync(volume.Id);
        Assert.Equal(4 * MiB, reopened.Info.SizeBytes);
        var read = new byte[MiB];
        await reopened.ReadAsync(0, read);
        Assert.Equal(data, read);
    }

    [Fact]
    public async Task ConcurrentMixedIoUnderTinyCacheAndDirtyLimitsStaysCorrect()
    {
        // 64 KiB chunks, room for 16 cached and 2 dirty: every path (evict, reload, upload while
        // writing, discard while uploading, flush racing writers) runs constantly.
        await using var ctx = fixture.CreateStore(new()
        {
            ["chunkSize"] = "64Ki", ["cacheSize"] = "1Mi", ["dirtyLimit"] = "128Ki", ["readAhead"] = "4", ["uploadConcurrency"] = "4",
        });
        const int workers = 4;
        const int region = 2 * MiB;
        var volume = await ctx.Store.CreateVolumeAsync(new CreateVolumeRequest("stress", workers * region));
        var model = new byte[workers * region];
        await using (var backend = await ctx.Store.OpenVolumeAsync(volume.Id))
        {
            using var stop = new CancellationTokenSource();
            var flusher = Task.Run(async () =>
            {
                while (!stop.IsCancellationRequested)
                {
                    await backend.FlushAsync();
                    await Task.Delay(5);
                }
            });

            await Task.WhenAll(Enumerable.Range(0, workers).Select(w => Task.Run(async () =>
            {
                var random = new Random(500 + w);
                var read = new byte[256 * 1024];
                for (var i = 0; i < 150; i++)
                {
                    var length = random.Next(1, 257) * 1024;
                    var offset = w * (long)region + random.Next(0, (region - length) / 512 + 1) * 512L;
                    switch (random.Next(4))
                    {
                        case 0:
                        case 1:
                            var data = Filled(length, random.Next());
                            await backend.WriteAsync(offset, data);
                            data.CopyTo(model, offset);
                            break;
                        case 2:
                            await backend.ReadAsync(offset, read.AsMemory(0, length));
                            Assert.True(model.AsSpan((int)offset, length).SequenceEqual(read.AsSpan(0, length)), $"worker {w} op {i}: read at {offset}+{length}");
                            break;
                        default:
                            await backend.DiscardAsync(offset, length);
                            Array.Clear(model, (int)offset, length);
                            break;
                    }
                }
            })));

            stop.Cancel();
            await flusher;
            await backend.FlushAsync();
        }

        await using var cold = await (await fixture.ReopenAsync(ctx)).OpenVolumeAsync(volume.Id);
        var all = new byte[model.Length];
        await cold.ReadAsync(0, all);
        Assert.True(model.AsSpan().SequenceEqual(all), "content after flush and a cold reopen");
    }

    [Fact]
    public async Task ARestartedWriterAdoptsItsPredecessorsUnflushedWrites()
    {
        await using var ctx = fixture.CreateStore([]);
        var volume = await ctx.Store.CreateVolumeAsync(new CreateVolumeRequest("adopt", 4 * MiB));
        var flushed = Filled(MiB, 20);
        var unflushed = Filled(64 * 1024, 21);
        var killed = Assert.IsType<S3Volume>(await ctx.Store.OpenVolumeAsync(volume.Id));
        await killed.WriteAsync(0, flushed);
        await killed.FlushAsync();
        await killed.WriteAsync(2 * MiB, unflushed);
        await killed.DiscardAsync(0, MiB); // completed, not flushed: must survive the restart too
        killed.Abandon(); // kill -9

        await using (var successor = await ctx.Store.OpenVolumeAsync(volume.Id))
        {
            Assert.Equal(unflushed, await ReadAsync(successor, 2 * MiB, unflushed.Length));
            Assert.False((await ReadAsync(successor, 0, MiB)).AsSpan().ContainsAnyExcept((byte)0));
        }

        await using var cold = await (await fixture.ReopenAsync(ctx)).OpenVolumeAsync(volume.Id);
        Assert.Equal(unflushed, await ReadAsync(cold, 2 * MiB, unflushed.Length));
        Assert.False((await ReadAsync(cold, 0, MiB)).AsSpan().ContainsAnyExcept((byte)0));
    }

    [Fact]
    public async Task ACacheFromAnotherBootOrBehindTheBucketIsDiscarded()
    {
        await using var ctx = fixture.CreateStore([]);
        var volume = await ctx.Store.CreateVolumeAsync(new CreateVolumeRequest("stale", 4 * MiB));
        var flushed = Filled(MiB, 30);

        // After a reboot the cache file may have lost bytes: never adopt it.
        var killed = Assert.IsType<S3Volume>(await ctx.Store.OpenVolumeAsync(volume.Id));
        await killed.WriteAsync(0, flushed);
        await killed.FlushAsync();
        await killed.WriteAsync(0, Filled(4096, 31));
        killed.Abandon();
        var realBoot = CacheJournal.BootId;
        try
        {
            CacheJournal.BootId = () => "00000000-0000-0000-0000-000000000000";
            await using var afterReboot = await ctx.Store.OpenVolumeAsync(volume.Id);
            Assert.Equal(flushed, await ReadAsync(afterReboot, 0, MiB));
        }
        finally
        {
            CacheJournal.BootId = realBoot;
        }

        // A writer elsewhere committed after this node's writer died: its cache is stale.
        killed = Assert.IsType<S3Volume>(await ctx.Store.OpenVolumeAsync(volume.Id));
        await killed.WriteAsync(MiB, Filled(4096, 32));
        killed.Abandon();
        await using var elsewhere = fixture.CreateStore([]);
        var parameters = new Dictionary<string, string>(elsewhere.Parameters) { ["prefix"] = ctx.Parameters["prefix"] };
        var newer = Filled(MiB, 33);
        await using (var otherNode = StoreRegistry.Open("s3", parameters, elsewhere.Secrets))
        await using (var writer = await otherNode.OpenVolumeAsync(volume.Id))
        {
            await writer.WriteAsync(MiB, newer);
            await writer.FlushAsync();
        }

        await using var back = await ctx.Store.OpenVolumeAsync(volume.Id);
        Assert.Equal(newer, await ReadAsync(back, MiB, MiB));
    }

    [Fact]
    public async Task ASecondWriterOnTheSameNodeIsRefused()
    {
        await using var ctx = fixture.CreateStore([]);
        var volume = await ctx.Store.CreateVolumeAsync(new CreateVolumeRequest("one-writer", MiB));
        await using var first = await ctx.Store.OpenVolumeAsync(volume.Id);
        var e = await Assert.ThrowsAsync<StoreException>(() => ctx.Store.OpenVolumeAsync(volume.Id));
        Assert.Equal(StoreErrorCode.FailedPrecondition, e.Code);
        await using var reader = await ctx.Store.OpenVolumeAsync(volume.Id, VolumeAccess.ReadOnly); // readers are fine
    }

    [Fact]
    public async Task UnreachableEndpointIsUnavailable()
    {
        var cache = TempDirectory.Create("s3-unreachable");
        try
        {
            var parameters = fixture.Server.StoreParameters("x", cache);
            parameters["endpoint"] = "http://127.0.0.1:9"; // discard port: nothing listens
            await using var store = StoreRegistry.Open("s3", parameters, LocalS3Server.StoreSecrets());
            var e = await Assert.ThrowsAsync<StoreException>(() => store.GetVolumeAsync("v"));
            Assert.Equal(StoreErrorCode.Unavailable, e.Code);
            Assert.DoesNotContain(LocalS3Server.SecretAccessKey + "x", e.Message);
        }
        finally
        {
            Directory.Delete(cache, recursive: true);
        }
    }

    [Fact]
    public async Task MissingBucketAndRefusedCredentialsAreNamed()
    {
        var cache = TempDirectory.Create("s3-refused");
        try
        {
            var noBucket = fixture.Server.StoreParameters("x", cache);
            noBucket["bucket"] = "no-such-bucket";
            await using (var store = StoreRegistry.Open("s3", noBucket, LocalS3Server.StoreSecrets()))
            {
                var e = await Assert.ThrowsAsync<StoreException>(() => store.CreateVolumeAsync(new CreateVolumeRequest("v", MiB)));
                Assert.Equal(StoreErrorCode.FailedPrecondition, e.Code);
                Assert.Contains("bucket does not exist", e.Message);
            }

            var badSecret = new Dictionary<string, string> { ["accessKeyId"] = "NOT-A-KEY", ["secretAccessKey"] = "wrong-secret-value" };
            await using (var store = StoreRegistry.Open("s3", fixture.Server.StoreParameters("x", cache), badSecret))
            {
                var e = await Assert.ThrowsAsync<StoreException>(() => store.ListVolumesAsync());
                Assert.Equal(StoreErrorCode.PermissionDenied, e.Code);
                Assert.DoesNotContain("wrong-secret-value", e.ToString());
            }
        }
        finally
        {
            Directory.Delete(cache, recursive: true);
        }
    }

    private async Task<int> CountAsync(string keyPrefix) => (await S3TestData.ListAsync(fixture.Server, keyPrefix)).Count;
}
