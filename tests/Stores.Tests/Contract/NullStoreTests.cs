using UblkCsi.Engine;
using UblkCsi.Stores;

namespace UblkCsi.Stores.Tests.Contract;

/// <summary>The null store keeps a real control path but no data.</summary>
public sealed class NullStoreTests
{
    [Fact]
    public async Task ControlPathWorksAndDataReadsAsZeros()
    {
        await using var store = StoreRegistry.Open("null", new Dictionary<string, string> { ["capacity"] = "8Mi" });
        var volume = await store.CreateVolumeAsync(new CreateVolumeRequest("n1", 4 << 20));
        Assert.Equal(volume, await store.CreateVolumeAsync(new CreateVolumeRequest("n1", 4 << 20)));
        await using (var backend = await store.OpenVolumeAsync(volume.Id))
        {
            await backend.WriteAsync(0, Enumerable.Repeat((byte)5, 4096).ToArray(), BlockWriteFlags.Fua);
            var read = new byte[4096];
            await backend.ReadAsync(0, read);
            Assert.False(read.AsSpan().ContainsAnyExcept((byte)0));
            await Assert.ThrowsAsync<BlockBackendException>(async () => await backend.ReadAsync(4 << 20, read));
        }

        var snapshot = await store.CreateSnapshotAsync(volume.Id, "n1-snap");
        Assert.Equal(4 << 20, snapshot.SizeBytes);
        var full = await Assert.ThrowsAsync<StoreCapacityException>(() => store.CreateVolumeAsync(new CreateVolumeRequest("n2", 1 << 20)));
        Assert.Equal(StoreErrorCode.ResourceExhausted, full.Code);
        Assert.Equal(0, (await store.GetCapacityAsync()).AvailableBytes);
        Assert.True(await store.DeleteSnapshotAsync("n1-snap"));
        await store.CreateVolumeAsync(new CreateVolumeRequest("n2", 1 << 20));
    }
}
