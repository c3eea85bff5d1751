using UblkCsi.BlockStoreServer.Tests.Support;
using UblkCsi.Engine;
using UblkCsi.Stores;

namespace UblkCsi.BlockStoreServer.Tests;

/// <summary><c>rpc://HOST:PORT/VOLUME</c> specs, as <c>ublk-csi attach --store</c> opens them.</summary>
public sealed class SpecTests
{
    [Fact]
    public async Task ASpecCreatesTheVolumeWithASizeAndReopensItWithout()
    {
        var root = TestPaths.NewDirectory("spec");
        await using var host = await InProcessHost.StartAsync(["--listen", "tcp://127.0.0.1:0", "--root", root]);
        var spec = StoreSpec.Parse($"rpc://127.0.0.1:{host.Endpoint.Port}/pvc-spec");
        Assert.Equal($"rpc://127.0.0.1:{host.Endpoint.Port}/pvc-spec", spec.Description);

        var missing = await Assert.ThrowsAsync<StoreParameterException>(() => spec.OpenAsync());
        Assert.Equal("size", missing.ParameterName);

        await using (var created = await spec.OpenAsync(new StoreSpecOpenOptions(SizeBytes: 64 << 20)))
        {
            Assert.Equal(64L << 20, created.Info.SizeBytes);
            await created.WriteAsync(4096, new byte[] { 1, 2, 3 }.Concat(new byte[509]).ToArray());
            await created.FlushAsync();
        }

        await using (var reopened = await spec.OpenAsync(new StoreSpecOpenOptions(ReadOnly: true)))
        {
            Assert.True((reopened.Info.Features & BlockBackendFeatures.ReadOnly) != 0);
            var read = new byte[512];
            await reopened.ReadAsync(4096, read);
            Assert.Equal([1, 2, 3], read[..3]);
            var e = await Assert.ThrowsAsync<BlockBackendException>(async () => await reopened.WriteAsync(0, new byte[512]));
            Assert.Equal(BlockBackendException.EROFS, e.Errno);
        }

        var wrongSize = await Assert.ThrowsAsync<StoreParameterException>(() => spec.OpenAsync(new StoreSpecOpenOptions(SizeBytes: 32 << 20)));
        Assert.Equal("size", wrongSize.ParameterName);
    }

    [Fact]
    public async Task TheTokenComesFromAFileNamedInTheSpecAndNeverFromTheSpecItself()
    {
        var root = TestPaths.NewDirectory("spec-token");
        var tokenFile = TestPaths.WriteTokenFile(root, "spec-token-123");
        await using var host = await InProcessHost.StartAsync(["--listen", "tcp://127.0.0.1:0", "--root", root, "--token-file", tokenFile]);

        var spec = StoreSpec.Parse($"rpc://127.0.0.1:{host.Endpoint.Port}/tokened?token-file={tokenFile}");
        await using (var volume = await spec.OpenAsync(new StoreSpecOpenOptions(SizeBytes: 1 << 20)))
        {
            await volume.WriteAsync(0, new byte[4096]);
        }

        Assert.DoesNotContain("spec-token-123", spec.Description);
        var anonymous = StoreSpec.Parse($"rpc://127.0.0.1:{host.Endpoint.Port}/tokened");
        var refused = await Assert.ThrowsAsync<StoreParameterException>(() => anonymous.OpenAsync());
        Assert.Equal("token", refused.ParameterName);
    }

    [Theory]
    [InlineData("rpc://127.0.0.1/vol", "spec")]
    [InlineData("rpc://127.0.0.1:0/vol", "spec")]
    [InlineData("rpc://127.0.0.1:99999/vol", "spec")]
    [InlineData("rpc://127.0.0.1:9400", "spec")]
    [InlineData("rpc://127.0.0.1:9400/../etc", "volume")]
    [InlineData("rpc://127.0.0.1:9400/a/b", "volume")]
    [InlineData("rpc://127.0.0.1:9400/vol?token-file=relative", "token-file")]
    [InlineData("rpc://127.0.0.1:9400/vol?token=abc", "token")]
    [InlineData("rpc://127.0.0.1:9400/vol?retry-attempts=0", "retry-attempts")]
    [InlineData("rpc://127.0.0.1:9400/vol?retry-attempts=many", "retry-attempts")]
    public void BadSpecsAreRejectedNamingThePart(string text, string parameter)
    {
        var e = Assert.Throws<StoreParameterException>(() => StoreSpec.Parse(text));
        Assert.Equal(parameter, e.ParameterName);
    }

    [Fact]
    public void ASpecMayGiveTheRetryBudget() =>
        Assert.Equal("rpc://127.0.0.1:9400/vol?retry-attempts=30", StoreSpec.Parse("rpc://127.0.0.1:9400/vol?retry-attempts=30").Description);

    [Fact]
    public void Ipv6EndpointsAreCanonical()
    {
        Assert.Equal("rpc://[::1]:9400/vol", StoreSpec.Parse("rpc://[::1]:9400/vol").Description);
    }
}
