using UblkCsi.Engine;
using UblkCsi.Stores;
using UblkCsi.Stores.S3;
using UblkCsi.Stores.Tests.Conformance;
using static UblkCsi.Stores.Tests.S3.S3TestData;

namespace UblkCsi.Stores.Tests.S3;

/// <summary>
/// Writer generations against a real s3rver: two writers on one volume (the later wins, the earlier
/// is fenced), flush journals replayed by a cold reader, flush cost independent of the volume's size,
/// and cache hits that never wait behind a download.
/// </summary>
public sealed class S3WriterGenerationTests(S3StoreFixture fixture) : IClassFixture<S3StoreFixture>
{
    private const int MiB = 1 << 20;

    [Fact]
    public async Task TheLaterWriterWinsAndTheEarlierOneIsFencedAtItsNextFlush()
    {
        await using var nodeA = fixture.CreateStore([]);
        await using var nodeB = OtherNode(nodeA); // same bucket prefix, its own cache directory
        var volume = await nodeA.Store.CreateVolumeAsync(new CreateVolumeRequest("two-writers", 4 * MiB));
        var acknowledged = Filled(MiB, 1);
        var writerA = Assert.IsType<S3Volume>(await nodeA.Store.OpenVolumeAsync(volume.Id));
        await writerA.WriteAsync(0, acknowledged);
        await writerA.FlushAsync(); // acknowledged before B exists: B must read it

        var pattern = Filled(MiB, 2);
        await using (var writerB = await nodeB.Store.OpenVolumeAsync(volume.Id))
        {
            Assert.Equal(acknowledged, await ReadAsync(writerB, 0, MiB));
            await writerB.WriteAsync(MiB, pattern);
            await writerB.FlushAsync();

            // A writes into its cache (nothing tells it yet), then its flush finds the newer lease.
            await writerA.WriteAsync(MiB, Filled(MiB, 3));
            await writerA.WriteAsync(2 * MiB, Filled(MiB, 4));
            var flush = await Assert.ThrowsAsync<BlockBackendException>(async () => await writerA.FlushAsync());
            Assert.Equal(BlockBackendException.EIO, flush.Errno);
            Assert.Contains("opened for writing elsewhere", flush.Message);
            Assert.True(writerA.Condition.Abnormal);
            Assert.Contains("opened for writing elsewhere", writerA.Condition.Message);

            // Its later writes and flushes fail too; B goes on undisturbed.
            var write = await Assert.ThrowsAsync<BlockBackendException>(async () => await writerA.WriteAsync(3 * MiB, Filled(4096, 5)));
            Assert.Equal(BlockBackendException.EIO, write.Errno);
            await Assert.ThrowsAsync<BlockBackendException>(async () => await writerA.FlushAsync());
            await writerA.DisposeAsync(); // a fenced writer detaches without an error: its data lost by design
            await writerB.WriteAsync(3 * MiB, pattern);
            await writerB.FlushAsync();
        }

        // A fresh node sees B's data, A's acknowledged flush, and nothing A wrote after B's lease.
        await using var nodeC = OtherNode(nodeA);
        await using var fresh = await nodeC.Store.OpenVolumeAsync(volume.Id, VolumeAccess.ReadOnly);
        Assert.Equal(acknowledged, await ReadAsync(fresh, 0, MiB));
        Assert.Equal(pattern, await ReadAsync(fresh, MiB, MiB));
        Assert.False((await ReadAsync(fresh, 2 * MiB, MiB)).AsSpan().ContainsAnyExcept((byte)0));
        Assert.Equal(pattern, await ReadAsync(fresh, 3 * MiB, MiB));

        // Delete leaves nothing behind: no writer objects, no chunk versions of either generation.
        var prefix = nodeA.Parameters["prefix"];
        Assert.True(await nodeA.Store.DeleteVolumeAsync(volume.Id));
        Assert.Equal(0, await CountAsync(prefix + "/writers/"));
        Assert.Equal(0, await CountAsync(prefix + "/chunks/"));
    }

    [Fact]
    public async Task TheWinnerRemovesTheObjectsOfOlderGenerations()
    {
        await using var ctx = fixture.CreateStore([]);
        var volume = await ctx.Store.CreateVolumeAsync(new CreateVolumeRequest("winner-cleans", 4 * MiB));
        var prefix = ctx.Parameters["prefix"];
        for (var round = 0; round < 3; round++)
        {
            await using var writer = await ctx.Store.OpenVolumeAsync(volume.Id);
            await writer.WriteAsync(0, Filled(MiB, 10 + round)); // chunk 0 gets a new version each time
            await writer.WriteAsync(round * (long)MiB, Filled(MiB, 20 + round));
            await writer.FlushAsync();
        }

        // Each open started a cleanup of the generations before it; the last open's may still run.
        await using (var last = await ctx.Store.OpenVolumeAsync(volume.Id))
        {
        }

        var root = prefix + "/writers/" + volume.Id + "/";
        var generations = (await ListAsync(root)).Select(k => k[root.Length..][..16]).Distinct().ToList();
        Assert.Single(generations); // only the newest generation's lease and base remain
        Assert.Equal(3, await CountAsync(prefix + "/chunks/")); // chunk 0's latest version, chunks 1 and 2
    }

    [Fact]
    public async Task AColdReaderReplaysTheFlushJournalAndCompactionKeepsItShort()
    {
        await using var ctx = fixture.CreateStore(new() { ["chunkSize"] = "64Ki" });
        var volume = await ctx.Store.CreateVolumeAsync(new CreateVolumeRequest("journal-replay", 8 * MiB));
        var model = new byte[8 * MiB];
        var flushes = S3Volume.CompactAfterJournals + 10;
        var writer = Assert.IsType<S3Volume>(await ctx.Store.OpenVolumeAsync(volume.Id));
        for (var i = 0; i < flushes; i++)
        {
            var data = Filled(4096, 100 + i);
            var offset = i * 64L * 1024 + 512;
            await writer.WriteAsync(offset, data);
            data.CopyTo(model, offset);
            await writer.FlushAsync();
        }

        writer.Abandon(); // no flush at close: what the bucket holds is the base plus the journal

        var journals = await WaitForAsync(async () =>
        {
            var n = (await ListAsync(ctx.Parameters["prefix"] + "/writers/")).Count(k => k.Contains("/journal-", StringComparison.Ordinal));
            return n < flushes ? n : (int?)null;
        });
        Assert.True(journals < flushes, $"compaction should have folded journals into a base; {journals} remain of {flushes}");

        await using var other = OtherNode(ctx);
        await using var cold = await other.Store.OpenVolumeAsync(volume.Id, VolumeAccess.ReadOnly);
        var read = await ReadAsync(cold, 0, model.Length);
        Assert.True(model.AsSpan().SequenceEqual(read), "cold read after base + journal replay");
    }

    [Fact]
    public async Task AFlushCommitsOnlyWhatChangedWhateverTheVolumeSize()
    {
        await using var ctx = fixture.CreateStore(new() { ["chunkSize"] = "4Mi", ["cacheSize"] = "64Mi", ["dirtyLimit"] = "32Mi" });
        var volume = await ctx.Store.CreateVolumeAsync(new CreateVolumeRequest("one-tib", 1L << 40));
        await using (var writer = await ctx.Store.OpenVolumeAsync(volume.Id))
        {
            await writer.WriteAsync((1L << 40) - 4096, Filled(4096, 7)); // the last chunk: a full map would be 2 MiB
            await writer.FlushAsync();
        }

        var listed = await S3TestData.ListAsync(fixture.Server, ctx.Parameters["prefix"] + "/writers/");
        var journal = Assert.Single(listed, o => o.Key.Contains("/journal-", StringComparison.Ordinal));
        Assert.True(journal.Size < 1024, $"the flush journal of a 1 TiB volume holds {journal.Size} bytes");

        await using var cold = await (await fixture.ReopenAsync(ctx)).OpenVolumeAsync(volume.Id, VolumeAccess.ReadOnly);
        Assert.Equal(Filled(4096, 7), await ReadAsync(cold, (1L << 40) - 4096, 4096));
    }

    [Fact]
    public async Task ACacheHitCompletesWhileADownloadOfAnotherChunkIsHeld()
    {
        await using var ctx = fixture.CreateStore(new() { ["readAhead"] = "0" });
        var volume = await ctx.Store.CreateVolumeAsync(new CreateVolumeRequest("hit-while-download", 4 * MiB));
        await using (var writer = await ctx.Store.OpenVolumeAsync(volume.Id))
        {
            await writer.WriteAsync(MiB, Filled(MiB, 8));
        }

        await using var cold = Assert.IsType<S3Volume>(await (await fixture.ReopenAsync(ctx)).OpenVolumeAsync(volume.Id));
        var hit = Filled(MiB, 9);
        await cold.WriteAsync(0, hit); // a full-chunk write: cached without a download

        var held = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        cold.BeforeDownloadForTests = _ => { started.TrySetResult(); return held.Task; };
        var miss = ReadAsync(cold, MiB, MiB);
        await started.Task.WaitAsync(TimeSpan.FromSeconds(30));

        var buffer = new byte[MiB];
        var read = cold.ReadAsync(0, buffer);
        Assert.True(read.IsCompletedSuccessfully, "a cache hit must complete synchronously while another chunk downloads");
        Assert.Equal(hit, buffer);
        Assert.False(miss.IsCompleted);

        held.SetResult();
        Assert.Equal(Filled(MiB, 8), await miss);
    }

    private StoreContext OtherNode(StoreContext node)
    {
        var other = fixture.CreateStore([]);
        var parameters = new Dictionary<string, string>(node.Parameters) { ["cacheDir"] = other.Parameters["cacheDir"] };
        var context = new StoreContext(StoreRegistry.Open("s3", parameters, node.Secrets), parameters, node.Secrets);
        context.Cleanup.Add(() => other.DisposeAsync().AsTask().GetAwaiter().GetResult());
        return context;
    }

    private static async Task<int> WaitForAsync(Func<Task<int?>> probe)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (true)
        {
            if (await probe() is { } value)
            {
                return value;
            }

            if (DateTime.UtcNow > deadline)
            {
                return int.MaxValue;
            }

            await Task.Delay(50);
        }
    }

    private async Task<List<string>> ListAsync(string keyPrefix) =>
        (await S3TestData.ListAsync(fixture.Server, keyPrefix)).Select(o => o.Key).ToList();

    private async Task<int> CountAsync(string keyPrefix) => (await ListAsync(keyPrefix)).Count;
}
