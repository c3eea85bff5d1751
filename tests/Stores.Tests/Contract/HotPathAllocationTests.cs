using UblkCsi.Engine;
using UblkCsi.Stores;
using UblkCsi.Stores.Tests.Conformance;

namespace UblkCsi.Stores.Tests.Contract;

/// <summary>
/// The engine calls stores on its queue threads for every request: a synchronous completion must
/// not allocate (no GC pressure per I/O). Measured with the thread's allocation counter.
/// </summary>
public sealed class HotPathAllocationTests(S3StoreFixture s3) : IClassFixture<S3StoreFixture>
{
    private const int Operations = 2000;

    [Fact]
    public async Task BufferedFileVolumeReadsAndWritesDoNotAllocate()
    {
        // Buffered mode completes inline on the queue thread; direct mode runs on the blocking workers.
        var root = TempDirectory.Create("alloc-file");
        try
        {
            await using var store = StoreRegistry.Open("file", new Dictionary<string, string> { ["root"] = root, ["directIo"] = "off" });
            var volume = await store.CreateVolumeAsync(new CreateVolumeRequest("alloc", 8 << 20));
            await using var backend = await store.OpenVolumeAsync(volume.Id);
            AssertNoAllocations(backend);
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    [Fact]
    public async Task MemoryVolumeReadsAndWritesDoNotAllocate()
    {
        await using var store = StoreRegistry.Open("memory", new Dictionary<string, string>());
        var volume = await store.CreateVolumeAsync(new CreateVolumeRequest("alloc", 8 << 20));
        await using var backend = await store.OpenVolumeAsync(volume.Id);
        AssertNoAllocations(backend);
    }

    [Fact]
    public async Task S3VolumeCacheHitsDoNotAllocate()
    {
        await using var ctx = s3.CreateStore([]);
        var volume = await ctx.Store.CreateVolumeAsync(new CreateVolumeRequest("alloc", 8 << 20));
        await using var backend = await ctx.Store.OpenVolumeAsync(volume.Id);
        AssertNoAllocations(backend);
    }

    private static void AssertNoAllocations(IBlockBackend backend)
    {
        var buffer = new byte[4096];
        new Random(3).NextBytes(buffer);
        Run(backend, buffer, 100); // warm up: JIT, first-touch allocations of pages and chunk state

        var before = GC.GetAllocatedBytesForCurrentThread();
        Run(backend, buffer, Operations);
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.True(allocated < 1024, $"{allocated} bytes allocated over {2 * Operations} synchronous I/Os");
    }

    private static void Run(IBlockBackend backend, byte[] buffer, int count)
    {
        for (var i = 0; i < count; i++)
        {
            var offset = (i % 64) * 4096L; // one 1 MiB chunk region: stays cached and under any dirty limit
            var write = backend.WriteAsync(offset, buffer);
            Assert.True(write.IsCompletedSuccessfully, "write should complete synchronously");
            write.GetAwaiter().GetResult();
            var read = backend.ReadAsync(offset, buffer);
            Assert.True(read.IsCompletedSuccessfully, "read should complete synchronously");
            read.GetAwaiter().GetResult();
        }
    }
}
