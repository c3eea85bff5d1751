namespace UblkCsi.Stores.Tests.Conformance;

/// <summary>Publication records (every store keeps them): persisted, per volume, gone with the volume.</summary>
public abstract partial class StoreConformanceTests
{
    [Fact]
    public async Task PublicationRecordsSurviveReopenAndDieWithTheVolume()
    {
        await using var ctx = await Fixture.CreateStoreAsync();
        Assert.IsAssignableFrom<IVolumePublications>(ctx.Store); // every store the controller serves keeps it (rpc: on the block-store server)

        var volume = await ctx.Store.CreateVolumeAsync(new CreateVolumeRequest("published", 1 << 20));
        await ((IVolumePublications)ctx.Store).SetPublicationsAsync(volume.Id, [new VolumePublication("node-a", ReadOnly: false)]);
        var reopened = (IVolumePublications)await Fixture.ReopenAsync(ctx);
        var kept = await reopened.GetPublicationsAsync(volume.Id);
        await ctx.Store.DeleteVolumeAsync(volume.Id);
        var recreated = await ctx.Store.CreateVolumeAsync(new CreateVolumeRequest("published", 1 << 20));

        Assert.Equal([new VolumePublication("node-a", false)], kept);
        Assert.Empty(await ((IVolumePublications)ctx.Store).GetPublicationsAsync(recreated.Id));
        await Assert.ThrowsAsync<StoreNotFoundException>(() => ((IVolumePublications)ctx.Store).GetPublicationsAsync("absent"));
        await ((IVolumePublications)ctx.Store).SetPublicationsAsync(recreated.Id, []);
    }
}
