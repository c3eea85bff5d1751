using UblkCsi.Engine.Threading;
using UblkCsi.Linux;
using UblkCsi.Stores.Files;
using UblkCsi.Stores.Tests.Conformance;

namespace UblkCsi.Stores.Tests.Files;

/// <summary>
/// The file store's O_DIRECT mode: the image's pages stay out of the page cache (measured with
/// mincore), aligned I/O goes to the blocking workers, unaligned offsets and buffers still work.
/// </summary>
public sealed class FileVolumeDirectIoTests : IDisposable
{
    private const int Bytes = 1 << 20;
    private readonly string _root = TempDirectory.Create("direct");

    public void Dispose() => Directory.Delete(_root, recursive: true);

    [Fact]
    public async Task DirectModeLeavesNoPagesOfTheImageInThePageCache()
    {
        Assert.True(FileVolume.SupportsDirectIo(CreateImage("probe")), $"{_root} is expected on a filesystem with O_DIRECT (ext4 here)");
        var direct = CreateImage("direct");
        using var workers = new BlockingWorkerPool(2);
        await using (var volume = FileVolume.Open("d", direct, Bytes, readOnly: false, workers, DirectIoMode.On))
        {
            Assert.True(volume.DirectIo);
            Assert.Equal(FileVolume.DirectIoAlignment, volume.Info.LogicalBlockSize);
            await WriteAndReadBackAsync(volume);
            Assert.True(workers.CompletedCalls >= 2 * (Bytes / 65536), $"{workers.CompletedCalls} worker calls");
        }

        Assert.Equal(0, ResidentPages(direct));

        var buffered = CreateImage("buffered");
        await using (var volume = FileVolume.Open("b", buffered, Bytes, readOnly: false, workers, DirectIoMode.Off))
        {
            Assert.False(volume.DirectIo);
            Assert.Equal(512, volume.Info.LogicalBlockSize);
            await WriteAndReadBackAsync(volume);
        }

        Assert.Equal(Bytes / Environment.SystemPageSize, ResidentPages(buffered));
    }

    [Fact]
    public async Task UnalignedOffsetsAndBuffersWorkAndStayCoherentWithDirectIo()
    {
        await using var volume = FileVolume.Open("u", CreateImage("u"), Bytes, readOnly: false, directIo: DirectIoMode.On);
        var random = new Random(7);

        // 512-byte aligned (the buffered descriptor) inside a 4 KiB block later read directly.
        var small = new byte[512];
        random.NextBytes(small);
        await volume.WriteAsync(4096 + 512, small);
        var block = new byte[4096];
        await volume.ReadAsync(4096, block);
        Assert.Equal(small, block.AsSpan(512, 512).ToArray());

        // A direct write read back through the buffered descriptor (the kernel invalidated the cached range).
        var aligned = new byte[8192];
        random.NextBytes(aligned);
        await volume.WriteAsync(8192, aligned, Engine.BlockWriteFlags.Fua);
        var part = new byte[512];
        await volume.ReadAsync(8192 + 1024, part);
        Assert.Equal(aligned.AsSpan(1024, 512).ToArray(), part);

        // A buffer that is not 4096-aligned (an offset into an array) bounces through an aligned one.
        var backing = new byte[4096 + 3];
        random.NextBytes(backing);
        var unalignedBuffer = backing.AsMemory(3, 4096);
        await volume.WriteAsync(16384, unalignedBuffer);
        var back = new byte[4096 + 5];
        await volume.ReadAsync(16384, back.AsMemory(5, 4096));
        Assert.Equal(unalignedBuffer.ToArray(), back.AsSpan(5, 4096).ToArray());
    }

    [Fact]
    public void TheStoreAndTheSpecTakeTheDirectIoParameter()
    {
        var store = (FileStore)StoreRegistry.Open("file", new Dictionary<string, string> { ["root"] = _root, ["directIo"] = "off" });
        Assert.Equal(DirectIoMode.Off, store.Options.DirectIo);
        var e = Assert.Throws<StoreParameterException>(() => StoreRegistry.Open("file", new Dictionary<string, string> { ["root"] = _root, ["directIo"] = "maybe" }));
        Assert.Equal("directIo", e.ParameterName);
        var spec = StoreSpec.Parse($"file:{_root}/x.img?direct-io=off");
        Assert.Equal($"file:{_root}/x.img?direct-io=off", spec.Description);
        Assert.Throws<StoreParameterException>(() => StoreSpec.Parse($"file:{_root}/x.img?direct=1"));
    }

    [Fact]
    public async Task OpeningASpecWithABadOptionCreatesNoImage()
    {
        // As a spec arrives from a record another process validated: not checked again before the open.
        var path = Path.Combine(_root, "new.img");
        var spec = StoreSpec.Parse($"file:{path}").With(path, new Dictionary<string, string> { ["direct-io"] = "maybe" });

        var e = await Assert.ThrowsAsync<StoreParameterException>(() => spec.OpenAsync(new StoreSpecOpenOptions { SizeBytes = Bytes }));

        Assert.Equal("direct-io", e.ParameterName);
        Assert.False(File.Exists(path));
    }

    private static async Task WriteAndReadBackAsync(FileVolume volume)
    {
        var buffer = new byte[65536];
        for (long offset = 0; offset < Bytes; offset += buffer.Length)
        {
            Random.Shared.NextBytes(buffer);
            await volume.WriteAsync(offset, buffer);
        }

        for (long offset = 0; offset < Bytes; offset += buffer.Length)
        {
            await volume.ReadAsync(offset, buffer);
        }
    }

    private string CreateImage(string name)
    {
        var path = Path.Combine(_root, name + ".img");
        using var f = File.Create(path);
        f.SetLength(Bytes);
        return path;
    }

    /// <summary>Pages of <paramref name="path"/> in the page cache (mincore over a mapping of it).</summary>
    private static unsafe int ResidentPages(string path)
    {
        using var f = File.OpenHandle(path);
        var length = (nuint)RandomAccess.GetLength(f);
        var map = Libc.Mmap(0, length, Libc.PROT_READ, Libc.MAP_SHARED, (int)f.DangerousGetHandle(), 0);
        Assert.NotEqual(-1, map);
        try
        {
            var pages = (int)((length + (nuint)Environment.SystemPageSize - 1) / (nuint)Environment.SystemPageSize);
            var vector = new byte[pages];
            fixed (byte* v = vector)
            {
                Assert.Equal(0, Libc.Mincore(map, length, v));
            }

            return vector.Count(b => (b & 1) != 0);
        }
        finally
        {
            _ = Libc.Munmap(map, length);
        }
    }
}
