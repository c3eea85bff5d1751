using Grpc.Core;
using UblkCsi.Controller.Provisioning;

namespace UblkCsi.Controller.Tests.Provisioning;

public sealed class PageTokenTests
{
    private static readonly string[] Ids = ["a", "b", "c", "d", "e"];

    [Fact]
    public void PagesWalkEveryEntryOnce()
    {
        var seen = new List<string>();
        var token = "";
        do
        {
            var (page, next) = PageToken.Slice(Ids, x => x, 2, token);
            seen.AddRange(page);
            token = next;
        }
        while (token.Length > 0);

        Assert.Equal(Ids, seen);
    }

    [Fact]
    public void ATokenNamingADeletedEntryResumesAfterIt()
    {
        var (_, next) = PageToken.Slice(Ids, x => x, 2, "");

        var (page, _) = PageToken.Slice(["a", "c", "d"], x => x, 0, next);

        Assert.Equal(["c", "d"], page);
    }

    [Fact]
    public void ForeignTokensAreAbortedAndNegativeSizesInvalid()
    {
        Assert.Equal(StatusCode.Aborted, Assert.Throws<RpcException>(() => PageToken.Slice(Ids, x => x, 0, "invalid-token")).StatusCode);
        Assert.Equal(StatusCode.InvalidArgument, Assert.Throws<RpcException>(() => PageToken.Slice(Ids, x => x, -1, "")).StatusCode);
    }
}
