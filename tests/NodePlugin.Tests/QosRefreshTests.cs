using UblkCsi.Engine.Backends.Qos;
using UblkCsi.NodePlugin.Volumes;
using UblkCsi.Stores;

namespace UblkCsi.NodePlugin.Tests;

/// <summary>Live QoS changes: the node reads the store's record and applies it to the served volume.</summary>
public sealed class QosRefreshTests
{
    [Fact]
    public async Task RecordedLimitsReachTheLiveDataPathAndContextLimitsStayUntilARecordExists()
    {
        var store = StoreRegistry.Open("memory", new Dictionary<string, string>());
        var volume = await store.CreateVolumeAsync(new CreateVolumeRequest("live", 1 << 20));
        var backend = await store.OpenVolumeAsync(volume.Id);
        await using var opened = new OpenedVolume(store, backend).Instrument(new QosLimits { MaxIops = 400 });
        var records = (IVolumeQosRecord)store;

        var withoutRecord = await opened.RefreshQosAsync(volume.Id, CancellationToken.None);
        var contextLimits = opened.Throttle!.Limits;
        await records.SetQosAsync(volume.Id, new QosLimits { MaxReadIops = 100 });
        var changed = await opened.RefreshQosAsync(volume.Id, CancellationToken.None);
        var unchanged = await opened.RefreshQosAsync(volume.Id, CancellationToken.None);
        await records.SetQosAsync(volume.Id, QosLimits.Unlimited);
        var lifted = await opened.RefreshQosAsync(volume.Id, CancellationToken.None);

        Assert.Null(withoutRecord);
        Assert.Equal(400, contextLimits.MaxIops);
        Assert.Equal(new QosLimits { MaxReadIops = 100 }, changed);
        Assert.Null(unchanged);
        Assert.Equal(QosLimits.Unlimited, lifted);
        Assert.True(opened.Throttle.Limits.IsUnlimited);
    }
}
