using UblkCsi.Engine.Backends.Qos;

namespace UblkCsi.Stores.Tests.Conformance;

/// <summary>QoS records (every store keeps them): persisted, replaced whole, gone with the volume.</summary>
public abstract partial class StoreConformanceTests
{
    [Fact]
    public async Task QosRecordsSurviveReopenAreReplacedWholeAndDieWithTheVolume()
    {
        await using var ctx = await Fixture.CreateStoreAsync();
        Assert.IsAssignableFrom<IVolumeQosRecord>(ctx.Store); // every store the controller serves keeps it (rpc: on the block-store server)

        var volume = await ctx.Store.CreateVolumeAsync(new CreateVolumeRequest("limited", 1 << 20));
        var unset = await ((IVolumeQosRecord)ctx.Store).GetQosAsync(volume.Id);
        await ((IVolumeQosRecord)ctx.Store).SetQosAsync(volume.Id, new QosLimits { MaxIops = 400, MaxReadBytesPerSecond = 1 << 20, BurstSeconds = 2 });

        // A new store instance (another controller replica, a restarted node plugin) reads the same record.
        var records = (IVolumeQosRecord)await Fixture.ReopenAsync(ctx);
        var kept = await records.GetQosAsync(volume.Id);
        await records.SetQosAsync(volume.Id, new QosLimits { MaxWriteIops = 50 });
        var replaced = await records.GetQosAsync(volume.Id);
        await ((IVolumeStore)records).DeleteVolumeAsync(volume.Id);
        var recreated = await ((IVolumeStore)records).CreateVolumeAsync(new CreateVolumeRequest("limited", 1 << 20));

        Assert.True(unset.IsUnlimited);
        Assert.Equal(new QosLimits { MaxIops = 400, MaxReadBytesPerSecond = 1 << 20, BurstSeconds = 2 }, kept);
        Assert.Equal(new QosLimits { MaxWriteIops = 50 }, replaced);
        Assert.True((await records.GetQosAsync(recreated.Id)).IsUnlimited);
        await Assert.ThrowsAsync<StoreNotFoundException>(() => records.GetQosAsync("absent"));
    }
}
