using UblkCsi.Engine.Threading;
using UblkCsi.Stores.Files;
using UblkCsi.Stores.Tests.Conformance;

namespace UblkCsi.Stores.Tests.Files;

/// <summary>
/// A file volume's blocking calls (fdatasync, FUA writes, zero-fill fallbacks) run on the dedicated
/// blocking workers, not the caller's thread and not the .NET thread pool that serves gRPC. The
/// latency effect on gRPC is measured by <c>ublk-csi bench-flush-storm</c> (too noisy for a shared CI box).
/// </summary>
public sealed class FileVolumeBlockingWorkTests : IDisposable
{
    private readonly string _root = TempDirectory.Create("blocking");

    public void Dispose() => Directory.Delete(_root, recursive: true);

    [Fact]
    public async Task FlushAndFuaWritesRunOnTheVolumesBlockingWorkers()
    {
        using var workers = new BlockingWorkerPool(1, name: "test-flush");
        await using var volume = OpenVolume("v", workers);
        var data = new byte[4096];
        await volume.FlushAsync();
        await volume.WriteAsync(0, data, Engine.BlockWriteFlags.Fua);
        await volume.WriteAsync(4096, data); // buffered write: inline, not a worker call
        await volume.FlushAsync();
        Assert.Equal(3, workers.CompletedCalls);
    }

    [Fact]
    public async Task ZeroFillFallbackRunsOnTheBlockingWorkersToo()
    {
        // A path the engine would only take on a filesystem without hole punching; forced here.
        using var workers = new BlockingWorkerPool(1, name: "test-zero");
        await using var volume = OpenVolume("z", workers);
        volume.DisableHolePunchingForTests();
        await volume.DiscardAsync(0, 1 << 20);
        Assert.Equal(1, workers.CompletedCalls);
    }

    private FileVolume OpenVolume(string name, BlockingWorkerPool workers)
    {
        var path = Path.Combine(_root, name + ".img");
        using (var f = File.Create(path))
        {
            f.SetLength(4 << 20);
        }

        return FileVolume.Open(name, path, 4 << 20, readOnly: false, workers, DirectIoMode.Off);
    }
}
