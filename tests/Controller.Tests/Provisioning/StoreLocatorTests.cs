using UblkCsi.Controller.Provisioning;
using UblkCsi.Stores;

namespace UblkCsi.Controller.Tests.Provisioning;

public sealed class StoreLocatorTests
{
    [Theory]
    [InlineData("file", "root=/var/lib/ublk-csi/", null, "file:/var/lib/ublk-csi")]
    [InlineData("s3", "bucket=vols;prefix=/team-a/;endpoint=http://minio.minio:9000;pathStyle=True;region=us-east-1;chunkSize=1Mi;cacheDir=/x", null, "s3:vols,team-a,http://minio.minio:9000,,true")]
    [InlineData("s3", "bucket=vols;region=eu-central-1", null, "s3:vols,,,eu-central-1")]
    [InlineData("rpc", "endpoint=tcp://10.0.0.5:9400;retryAttempts=3", null, "rpc:tcp://10.0.0.5:9400")]
    [InlineData("file", "root=/srv/with,comma and space", null, "file:/srv/with%2Ccomma%20and%20space")]
    [InlineData("file", "root=/data", "node-1", "file@6b2ad1c8:/data")]
    public void LocatorsCarryOnlyTheLocationInCanonicalFormAndRoundTrip(string type, string parameters, string? node, string expected)
    {
        var map = parameters.Split(';').Select(p => p.Split('=', 2)).ToDictionary(p => p[0], p => p[1]);

        var locator = StoreLocator.From(type, map, node);
        var text = locator.ToString();

        Assert.Equal(node is null ? expected : expected.Replace("6b2ad1c8", StoreLocator.NodeKeyOf(node), StringComparison.Ordinal), text);
        Assert.True(StoreLocator.TryParse(text, out var parsed));
        Assert.Equal(text, parsed!.ToString());
        Assert.Equal(locator.Location.OrderBy(p => p.Key), parsed.Location.OrderBy(p => p.Key));
    }

    [Theory]
    [InlineData("nfs:/x")]
    [InlineData("file")]
    [InlineData(":/x")]
    [InlineData("file@XYZ:/x")]
    [InlineData("file:/a,b")] // more values than the type has
    [InlineData("file:/a b")]
    public void ForeignLocatorsDoNotParse(string text) => Assert.False(StoreLocator.TryParse(text, out _));

    [Theory]
    [InlineData("file:/var/lib/ublk-csi/pvc-1", "file:/var/lib/ublk-csi", "pvc-1")]
    [InlineData("s3:b,p/q/h-0123", "s3:b,p/q", "h-0123")]
    public void HandlesSplitAtTheLastSlash(string text, string locator, string id)
    {
        Assert.True(VolumeHandle.TryParse(text, out var handle));
        Assert.Equal(locator, handle.Locator);
        Assert.Equal(id, handle.StoreId);
        Assert.Equal(text, handle.ToString());
    }

    [Theory]
    [InlineData("fake-vol-id")]
    [InlineData("/pvc-1")]
    [InlineData("file:/x/")]
    [InlineData("file:/x/..")]
    [InlineData("file:/x/a b")]
    public void NonHandlesAreRejected(string text) => Assert.False(VolumeHandle.TryParse(text, out _));

    [Fact]
    public void HandlesAboveCsisLimitAreRejected() =>
        Assert.False(VolumeHandle.TryParse("file:/" + new string('a', 120) + "/pvc-1", out _));
}
