using UblkCsi.Stores;

namespace UblkCsi.Stores.Tests.Contract;

public sealed class StoreParametersTests
{
    [Theory]
    [InlineData("4096", 4096L)]
    [InlineData("4Ki", 4096L)]
    [InlineData("4K", 4096L)]
    [InlineData("4MiB", 4L << 20)]
    [InlineData("1G", 1L << 30)]
    [InlineData("2Ti", 2L << 40)]
    public void SizesAcceptBinarySuffixes(string text, long bytes)
    {
        Assert.True(ByteSize.TryParse(text, out var parsed));
        Assert.Equal(bytes, parsed);
    }

    [Theory]
    [InlineData("")]
    [InlineData("-1")]
    [InlineData("1.5G")]
    [InlineData("4X")]
    [InlineData("99999999999P")]
    public void BadSizesAreRefused(string text) => Assert.False(ByteSize.TryParse(text, out _));

    [Fact]
    public void UnknownKeysAreRejectedListingTheAllowedOnes()
    {
        var p = new StoreParameters(new Dictionary<string, string> { ["root"] = "/x", ["rooot"] = "/y" });
        p.Optional("root");
        p.Optional("reflink");
        var e = Assert.Throws<StoreParameterException>(p.RejectUnknown);
        Assert.Equal("rooot", e.ParameterName);
        Assert.Contains("allowed: reflink, root", e.Message);
    }

    [Fact]
    public void SecretValuesNeverAppearInErrors()
    {
        var p = new StoreParameters(new Dictionary<string, string> { ["mode"] = "s3cr3t-value" }, "secrets", secret: true);
        var e = Assert.Throws<StoreParameterException>(() => p.Choice("mode", "a", "a", "b"));
        Assert.DoesNotContain("s3cr3t-value", e.Message);
        Assert.Contains("allowed: a, b", e.Message);
    }

    [Fact]
    public void IdsFromNamesAreStableAndSafe()
    {
        Assert.Equal("pvc-6f1c2d", VolumeIds.FromName("pvc-6f1c2d"));
        var hashed = VolumeIds.FromName("../../etc/passwd");
        Assert.Matches("^h-[0-9a-f]{32}$", hashed);
        Assert.Equal(hashed, VolumeIds.FromName("../../etc/passwd"));
        Assert.NotEqual(hashed, VolumeIds.FromName("../../etc/shadow"));
        Assert.NotEqual("h-abc", VolumeIds.FromName("h-abc")); // the hash prefix is reserved
        Assert.Throws<StoreParameterException>(() => VolumeIds.FromName("a\0b"));
        Assert.Throws<StoreParameterException>(() => VolumeIds.FromName(new string('x', 300)));
    }
}
