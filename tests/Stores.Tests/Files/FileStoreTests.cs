using System.Diagnostics;
using UblkCsi.Stores;
using UblkCsi.Stores.Files;
using UblkCsi.Stores.Tests.Conformance;

namespace UblkCsi.Stores.Tests.Files;

/// <summary>File-store specifics: layout, sparse copies, staging debris.</summary>
public sealed class FileStoreTests : IDisposable
{
    private const int MiB = 1 << 20;
    private readonly string _root = TempDirectory.Create("file-specific");

    public void Dispose() => Directory.Delete(_root, recursive: true);

    [Theory]
    [InlineData("never")]
    [InlineData("auto")]
    public async Task SnapshotCopiesStaySparse(string reflink)
    {
        await using var store = StoreRegistry.Open("file", new Dictionary<string, string> { ["root"] = _root, ["reflink"] = reflink });
        var volume = await store.CreateVolumeAsync(new CreateVolumeRequest("sparse-src", 256L * MiB));
        await using (var backend = await store.OpenVolumeAsync(volume.Id))
        {
            await backend.WriteAsync(100L * MiB, Enumerable.Repeat((byte)1, MiB).ToArray());
            await backend.FlushAsync();
        }

        await store.CreateSnapshotAsync(volume.Id, "sparse-snap");
        var snapshotImage = Path.Combine(_root, "snapshots", "sparse-snap.img");
        Assert.Equal(256L * MiB, new FileInfo(snapshotImage).Length);
        Assert.True(AllocatedBytes(snapshotImage) <= 2L * MiB, $"snapshot image allocates {AllocatedBytes(snapshotImage)} bytes for 1 MiB of data");
    }

    [Fact]
    public async Task ReflinkAlwaysFailsClearlyWhereTheFilesystemCannot()
    {
        await using var store = StoreRegistry.Open("file", new Dictionary<string, string> { ["root"] = _root, ["reflink"] = "always" });
        var volume = await store.CreateVolumeAsync(new CreateVolumeRequest("rl", MiB));
        try
        {
            await store.CreateSnapshotAsync(volume.Id, "rl-snap");
            Assert.True(File.Exists(Path.Combine(_root, "snapshots", "rl-snap.img"))); // xfs/btrfs host: reflinked
        }
        catch (StoreException e)
        {
            Assert.Equal(StoreErrorCode.FailedPrecondition, e.Code);
            Assert.Contains("reflink", e.Message);
            Assert.Empty(Directory.GetFiles(Path.Combine(_root, ".staging"))); // no debris
            await Assert.ThrowsAsync<StoreNotFoundException>(() => store.GetSnapshotAsync("rl-snap"));
        }
    }

    [Fact]
    public async Task ASecondWriterIsRefusedWhileTheFirstHoldsTheImageAndReadersAreNot()
    {
        await using var store = new FileStore(new FileStoreOptions(_root) { WriterLockWait = TimeSpan.FromMilliseconds(500) });
        await store.CreateVolumeAsync(new CreateVolumeRequest("pvc-one-writer", 4 * MiB));
        var first = await store.OpenVolumeAsync("pvc-one-writer");

        // The lock belongs to the open, so a second writer in this process is refused exactly as one
        // in another process (another device, the operator tool) would be.
        var refused = await Assert.ThrowsAsync<StoreException>(() => store.OpenVolumeAsync("pvc-one-writer"));
        Assert.Equal(StoreErrorCode.FailedPrecondition, refused.Code);
        Assert.Contains("volume 'pvc-one-writer' is already open for writing on this node", refused.Message, StringComparison.Ordinal);
        await using (var reader = await store.OpenVolumeAsync("pvc-one-writer", VolumeAccess.ReadOnly))
        {
            Assert.True(reader.Info.SizeBytes == 4 * MiB);
        }

        // A writer that waits gets the image as soon as the first lets go (a restarted node plugin's
        // previous process exiting).
        var patient = new FileStore(new FileStoreOptions(_root) { WriterLockWait = TimeSpan.FromSeconds(20) });
        var waiting = patient.OpenVolumeAsync("pvc-one-writer");
        await Task.Delay(300);
        Assert.False(waiting.IsCompleted);
        await first.DisposeAsync();
        await using var next = await waiting.WaitAsync(TimeSpan.FromSeconds(10));
        await next.WriteAsync(0, new byte[4096]);
    }

    [Fact]
    public async Task WithoutExclusiveWritersTwoOpensOfOneImageCoexist()
    {
        // The block-store server's setting: it arbitrates writers itself and overlaps its own reopens.
        await using var store = new FileStore(new FileStoreOptions(_root, ExclusiveWriters: false));
        await store.CreateVolumeAsync(new CreateVolumeRequest("pvc-shared", 4 * MiB));
        await using var first = await store.OpenVolumeAsync("pvc-shared");
        await using var second = await store.OpenVolumeAsync("pvc-shared");
        await second.WriteAsync(0, new byte[4096]);
    }

    [Fact]
    public async Task LayoutIsImagePlusJsonSidecarAndDebrisIsIgnored()
    {
        await using var store = StoreRegistry.Open("file", new Dictionary<string, string> { ["root"] = _root });
        await store.CreateVolumeAsync(new CreateVolumeRequest("pvc-1", 3 * MiB));
        Assert.Equal(3L * MiB, new FileInfo(Path.Combine(_root, "volumes", "pvc-1.img")).Length);
        var sidecar = await File.ReadAllTextAsync(Path.Combine(_root, "volumes", "pvc-1.json"));
        Assert.Contains("\"name\": \"pvc-1\"", sidecar);

        // An image without a sidecar is an interrupted create: not a volume.
        await File.WriteAllBytesAsync(Path.Combine(_root, "volumes", "orphan.img"), new byte[4096]);
        Assert.Equal(["pvc-1"], (await store.ListVolumesAsync()).Select(v => v.Id));
        await Assert.ThrowsAsync<StoreNotFoundException>(() => store.OpenVolumeAsync("orphan"));
    }

    [Fact]
    public async Task AnOpenVolumeServesTheNewSizeOnceTheStoreGrewIt()
    {
        await using var store = StoreRegistry.Open("file", new Dictionary<string, string> { ["root"] = _root });
        await store.CreateVolumeAsync(new CreateVolumeRequest("pvc-grow", 4 * MiB));
        await using var backend = await store.OpenVolumeAsync("pvc-grow");
        var volume = Assert.IsAssignableFrom<StoreVolume>(backend);
        var block = new byte[4096];
        Assert.Equal(22, (await Assert.ThrowsAsync<Engine.BlockBackendException>(() => volume.WriteAsync(4 * MiB, block).AsTask())).Errno);

        // Before the store grew the image the volume cannot serve more.
        await Assert.ThrowsAsync<InvalidOperationException>(() => volume.TryGrowAsync(8 * MiB).AsTask());
        await store.ExpandVolumeAsync("pvc-grow", 8 * MiB);
        Assert.True(await volume.TryGrowAsync(8 * MiB));

        Assert.Equal(8L * MiB, volume.Info.SizeBytes);
        Random.Shared.NextBytes(block);
        await volume.WriteAsync(8 * MiB - 4096, block);
        var back = new byte[4096];
        await volume.ReadAsync(8 * MiB - 4096, back);
        Assert.Equal(block, back);
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => volume.TryGrowAsync(4 * MiB).AsTask()); // never shrinks
    }

    [Fact]
    public async Task CapacityComesFromTheFilesystem()
    {
        await using var store = StoreRegistry.Open("file", new Dictionary<string, string> { ["root"] = _root });
        var capacity = await store.GetCapacityAsync();
        var drive = new DriveInfo(_root);
        Assert.InRange(capacity.AvailableBytes!.Value, drive.AvailableFreeSpace / 2, drive.AvailableFreeSpace * 2);
    }

    private static long AllocatedBytes(string path)
    {
        using var stat = Process.Start(new ProcessStartInfo("stat", ["-c", "%b %B", path]) { RedirectStandardOutput = true })!;
        var parts = stat.StandardOutput.ReadToEnd().Trim().Split(' ');
        stat.WaitForExit();
        return long.Parse(parts[0]) * long.Parse(parts[1]);
    }
}
