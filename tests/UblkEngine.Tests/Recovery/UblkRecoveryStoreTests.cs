using UblkCsi.Engine;
using UblkCsi.Engine.Recovery;

namespace UblkCsi.UblkEngine.Tests.Recovery;

public sealed class UblkRecoveryStoreTests : IDisposable
{
    private readonly string _directory = Path.Combine(Path.GetTempPath(), $"ublk-state-{Guid.NewGuid():N}", "devices");

    public void Dispose()
    {
        var parent = Path.GetDirectoryName(_directory)!;
        if (Directory.Exists(parent))
        {
            Directory.Delete(parent, recursive: true);
        }
    }

    private static UblkRecoveryRecord Sample(int id) => new(
        id,
        Queues: 2,
        Depth: 64,
        new UblkDeviceParameters(1L << 30, 512, 4096, 524288, VolatileCache: true, Fua: true, ReadOnly: false, 4096, 1L << 31, 1L << 31),
        "file:/var/lib/volumes/pvc-1.img",
        new DateTimeOffset(2026, 1, 2, 3, 4, 5, TimeSpan.Zero))
    {
        ServerPid = 4242,
    };

    [Fact]
    public void RecordsRoundTripAndAreReplacedAtomically()
    {
        var store = new UblkRecoveryStore(_directory);
        store.Write(Sample(7));
        var updated = Sample(7) with { RecoveredAt = DateTimeOffset.UnixEpoch };
        store.Write(updated);

        Assert.Equal(updated, store.TryRead(7));
        Assert.Equal(["ublk7.json"], Directory.GetFiles(_directory).Select(Path.GetFileName));
        var json = File.ReadAllText(store.PathFor(7));
        Assert.Contains("\"deviceId\": 7", json);
        Assert.Contains("\"backend\": \"file:/var/lib/volumes/pvc-1.img\"", json);
    }

    [Fact]
    public void MissingRecordsAreNullAndDeleteIsIdempotent()
    {
        var store = new UblkRecoveryStore(_directory);
        Assert.Null(store.TryRead(3));
        store.Delete(3);
        store.Write(Sample(3));
        store.Delete(3);
        Assert.Null(store.TryRead(3));
    }

    [Fact]
    public void ReadAllSkipsForeignAndDamagedFiles()
    {
        var store = new UblkRecoveryStore(_directory);
        store.Write(Sample(2));
        store.Write(Sample(1));
        File.WriteAllText(Path.Combine(_directory, "ublk9.json"), "{ not json");
        File.WriteAllText(Path.Combine(_directory, "notes.json"), "{}");
        Assert.Equal([1, 2], store.ReadAll().Select(r => r.DeviceId));
        Assert.Throws<UblkException>(() => store.TryRead(9));
    }

    [Fact]
    public void OnlyNonNegativeIdsBecomeFileNames()
    {
        var store = new UblkRecoveryStore(_directory);
        Assert.Throws<ArgumentOutOfRangeException>(() => store.PathFor(-1));
        Assert.Equal(Path.Combine(store.Directory, "ublk12.json"), store.PathFor(12));
    }

    [Theory]
    [InlineData("file:/data/v.img", "file:/data/v.img")]
    [InlineData("s3://AKIA:wJalrXUtn@bucket/vol?region=eu", "s3://bucket/vol?region=eu")]
    [InlineData("s3://bucket/vol?endpoint=http://h:9000&secret-key=abc&region=x", "s3://bucket/vol?endpoint=http://h:9000&secret-key=REDACTED&region=x")]
    [InlineData("rpc://host:7000/vol?token=t0k&x=1", "rpc://host:7000/vol?token=REDACTED&x=1")]
    [InlineData("s3://b/v?X-Amz-Signature=sig&AccessKey=k", "s3://b/v?X-Amz-Signature=REDACTED&AccessKey=REDACTED")]
    public void BackendDescriptionsLoseTheirSecrets(string description, string expected) =>
        Assert.Equal(expected, BackendDescription.Redact(description));
}
