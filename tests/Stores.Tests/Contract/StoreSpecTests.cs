using UblkCsi.Engine;
using UblkCsi.Stores;
using UblkCsi.Stores.S3;
using UblkCsi.Stores.Tests.Conformance;
using UblkCsi.TestSupport;

namespace UblkCsi.Stores.Tests.Contract;

public sealed class StoreSpecTests
{
    [Theory]
    [InlineData("null", "null")]
    [InlineData(" memory ", "memory")]
    [InlineData("file:/var/lib/images/a.img", "file:/var/lib/images/a.img")]
    [InlineData("file:/var/lib/images/../images/a.img", "file:/var/lib/images/a.img")]
    [InlineData("s3://bkt/pre/fix/vol-1?region=eu-west-1&path-style=true&endpoint=http://127.0.0.1:9000",
        "s3://bkt/pre/fix/vol-1?endpoint=http%3A%2F%2F127.0.0.1%3A9000&path-style=true&region=eu-west-1")]
    [InlineData("rpc://10.0.0.5:7070/pvc-1", "rpc://10.0.0.5:7070/pvc-1")]
    public void ParsesToACanonicalDescriptionThatParsesAgain(string text, string canonical)
    {
        var spec = StoreSpec.Parse(text);
        Assert.Equal(canonical, spec.Description);
        Assert.Equal(canonical, StoreSpec.Parse(spec.Description).Description);
    }

    [Fact]
    public void FormsListEveryRegisteredStoreType()
    {
        foreach (var type in StoreRegistry.Types)
        {
            Assert.Matches($"(^|, ){System.Text.RegularExpressions.Regex.Escape(type)}(:|://|,|$)", StoreSpec.Forms);
        }

        Assert.Contains("nbd://HOST[:PORT]/EXPORT", StoreSpec.Forms);
        Assert.Contains("nbd+unix:///EXPORT?socket=/PATH", StoreSpec.Forms);
    }

    [Fact]
    public void RelativeFilePathsBecomeAbsolute()
    {
        var spec = StoreSpec.Parse("file:images/x.img");
        Assert.Equal("file:" + Path.GetFullPath("images/x.img"), spec.Description);
    }

    [Theory]
    [InlineData("", "spec")]
    [InlineData("disk", "spec")]
    [InlineData("ftp://host/x", "spec")]
    [InlineData("file:", "spec")]
    [InlineData("s3://bucket-only", "spec")]
    [InlineData("s3://Bad_Bucket/vol", "bucket")]
    [InlineData("s3://bkt/../vol", "prefix")]
    [InlineData("s3://bkt/pre/..", "volume")]
    [InlineData("s3://bkt/vol?chunk-size=3", "chunkSize")]
    [InlineData("s3://bkt/vol?colour=red", "colour")]
    [InlineData("s3://bkt/vol?access-key-id=AKIAXXXX", "access-key-id")]
    [InlineData("s3://bkt/vol?secret-access-key=topsecret", "secret-access-key")]
    [InlineData("s3://bkt/vol?region=a&region=b", "region")]
    [InlineData("rpc://host/vol", "spec")]
    [InlineData("rpc://host:99999/vol", "spec")]
    [InlineData("rpc://host:80/a/b", "volume")]
    [InlineData("file:/x.img?writer-wait=forever", "writer-wait")]
    [InlineData("file:/x.img?writer-wait=601", "writer-wait")]
    public void BadSpecsNameTheirFault(string text, string parameter)
    {
        var e = Assert.Throws<StoreParameterException>(() => StoreSpec.Parse(text));
        Assert.Equal(parameter, e.ParameterName);
        Assert.DoesNotContain("topsecret", e.Message);
    }

    [Fact]
    public async Task AFileSpecRefusesASecondWriterOfItsImageAfterItsWriterWait()
    {
        var image = Path.Combine(TempDirectory.Create("spec-writer"), "one.img");
        var options = new StoreSpecOpenOptions(SizeBytes: 1 << 20);
        await using var first = await StoreSpec.Parse($"file:{image}").OpenAsync(options);
        var watch = System.Diagnostics.Stopwatch.StartNew();
        var e = await Assert.ThrowsAsync<StoreException>(() => StoreSpec.Parse($"file:{image}?writer-wait=1").OpenAsync(options));
        Assert.Equal(StoreErrorCode.FailedPrecondition, e.Code);
        Assert.Contains("is already open for writing on this node: another writer kept its image locked for 1 s", e.Message, StringComparison.Ordinal);
        Assert.InRange(watch.Elapsed.TotalSeconds, 0.9, 20);
        await using var reader = await StoreSpec.Parse($"file:{image}").OpenAsync(options with { ReadOnly = true });
    }

    [Fact]
    public async Task MemorySpecNeedsASizeAndKeepsDataWhileOpen()
    {
        var spec = StoreSpec.Parse("memory");
        var e = await Assert.ThrowsAsync<StoreParameterException>(() => spec.OpenAsync());
        Assert.Equal("size", e.ParameterName);

        await using var backend = await spec.OpenAsync(new StoreSpecOpenOptions(SizeBytes: 1 << 20));
        Assert.Equal(1 << 20, backend.Info.SizeBytes);
        await backend.WriteAsync(4096, new byte[] { 1, 2, 3 }.Concat(new byte[509]).ToArray());
        var read = new byte[512];
        await backend.ReadAsync(4096, read);
        Assert.Equal(3, read[2]);
    }

    [Fact]
    public async Task NullSpecReadsZeros()
    {
        await using var backend = await StoreSpec.Parse("null").OpenAsync(new StoreSpecOpenOptions(SizeBytes: 1 << 30));
        await backend.WriteAsync(0, Enumerable.Repeat((byte)7, 4096).ToArray());
        var read = new byte[4096];
        await backend.ReadAsync(0, read);
        Assert.False(read.AsSpan().ContainsAnyExcept((byte)0));
    }

    [Fact]
    public async Task FileSpecCreatesASparseImageAndReopensIt()
    {
        var dir = TempDirectory.Create("spec");
        try
        {
            var path = Path.Combine(dir, "vol.img");
            var spec = StoreSpec.Parse("file:" + path);
            var missing = await Assert.ThrowsAsync<StoreParameterException>(() => spec.OpenAsync());
            Assert.Equal("size", missing.ParameterName);

            await using (var created = await spec.OpenAsync(new StoreSpecOpenOptions(SizeBytes: 10_000_000)))
            {
                Assert.Equal(10_002_432, created.Info.SizeBytes); // rounded up to 4 KiB
                await created.WriteAsync(8192, Enumerable.Repeat((byte)9, 4096).ToArray(), BlockWriteFlags.Fua);
            }

            await using (var reopened = await spec.OpenAsync())
            {
                var read = new byte[4096];
                await reopened.ReadAsync(8192, read);
                Assert.All(read, b => Assert.Equal(9, b));
            }

            var wrongSize = await Assert.ThrowsAsync<StoreParameterException>(() => spec.OpenAsync(new StoreSpecOpenOptions(SizeBytes: 1 << 20)));
            Assert.Equal("size", wrongSize.ParameterName);
            Assert.Throws<StoreParameterException>(() => StoreSpec.Parse("file:" + dir)); // a directory
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task S3SpecTakesCredentialsFromTheEnvironmentAndCreatesWithASize()
    {
        await using var server = await LocalS3Server.StartAsync("spec-bucket");
        var cache = TempDirectory.Create("spec-s3-cache");
        Environment.SetEnvironmentVariable("AWS_ACCESS_KEY_ID", LocalS3Server.AccessKeyId);
        Environment.SetEnvironmentVariable("AWS_SECRET_ACCESS_KEY", LocalS3Server.SecretAccessKey);
        try
        {
            var spec = StoreSpec.Parse($"s3://spec-bucket/team/vol-a?endpoint={Uri.EscapeDataString(server.Endpoint)}&path-style=true&cache-dir={cache}&chunk-size=1Mi");
            Assert.DoesNotContain(LocalS3Server.SecretAccessKey, spec.Description);
            await Assert.ThrowsAsync<StoreNotFoundException>(() => spec.OpenAsync());

            var data = Enumerable.Range(0, 8192).Select(i => (byte)i).ToArray();
            await using (var created = await spec.OpenAsync(new StoreSpecOpenOptions(SizeBytes: 3 << 20)))
            {
                await created.WriteAsync(1 << 20, data);
                await created.FlushAsync();
            }

            await using var reopened = await StoreSpec.Parse(spec.Description).OpenAsync();
            var read = new byte[8192];
            await reopened.ReadAsync(1 << 20, read);
            Assert.Equal(data, read);
        }
        finally
        {
            Environment.SetEnvironmentVariable("AWS_ACCESS_KEY_ID", null);
            Environment.SetEnvironmentVariable("AWS_SECRET_ACCESS_KEY", null);
            Directory.Delete(cache, recursive: true);
        }
    }
}
