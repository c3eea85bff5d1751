using UblkCsi.Stores.Nbd;

namespace UblkCsi.Stores.Tests.Nbd;

/// <summary>The chunks of a structured READ reply may come in any order but must never overlap.</summary>
public sealed class NbdReplyCoverageTests
{
    [Fact]
    public void ChunksInAnyOrderCoverTheRequestOnce()
    {
        var request = new NbdRequest(null!);
        Assert.True(request.TryCover(4096, 4096));
        Assert.True(request.TryCover(12288, 4096));
        Assert.True(request.TryCover(0, 4096));
        Assert.True(request.TryCover(8192, 4096)); // fills the gap between two ranges
        Assert.True(request.TryCover(16384, 0));
        Assert.Equal(16384, request.BytesCovered);
    }

    [Theory]
    [InlineData(0, 4096)]     // the same chunk again
    [InlineData(2048, 4096)]  // straddles the end of the first range
    [InlineData(6144, 4096)]  // straddles the start of the second range
    [InlineData(4096, 12288)] // contains the second range
    [InlineData(9000, 10)]    // inside the second range
    public void AnOverlappingChunkIsRefused(int start, int length)
    {
        var request = new NbdRequest(null!);
        Assert.True(request.TryCover(0, 4096));
        Assert.True(request.TryCover(8192, 4096));

        Assert.False(request.TryCover(start, length));
        Assert.Equal(8192, request.BytesCovered);
    }

    [Fact]
    public void ANewAttemptStartsWithNothingCovered()
    {
        var request = new NbdRequest(null!);
        Assert.True(request.TryCover(0, 4096));
        request.ResetReply();
        Assert.True(request.TryCover(0, 4096));
        Assert.Equal(4096, request.BytesCovered);
    }
}
