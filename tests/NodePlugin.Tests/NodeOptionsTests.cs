using UblkCsi.Hosting;

namespace UblkCsi.NodePlugin.Tests;

/// <summary>The node plugin's own options, parsed as the host runner parses them.</summary>
public sealed class NodeOptionsTests
{
    private static NodeOptions Parse(params string[] extra) =>
        NodeOptions.From(HostCommandLine.Parse(
            ["--endpoint", "unix:///tmp/csi.sock", "--node-id", "node-a", .. extra],
            new Dictionary<string, string?>(),
            NodeOptions.Declarations));

    [Fact]
    public void ZeroCopyIsOnByDefaultAndCanBeTurnedOff()
    {
        Assert.True(Parse().ZeroCopy);
        Assert.True(Parse("--zero-copy", "auto").ZeroCopy);
        Assert.False(Parse("--zero-copy", "off").ZeroCopy);
    }

    [Fact]
    public void AnUnknownZeroCopyValueNamesTheOptionAndTheAllowedValues()
    {
        var e = Assert.Throws<HostOptionException>(() => Parse("--zero-copy", "on"));
        Assert.Contains("--zero-copy", e.Message);
        Assert.Contains("auto, off", e.Message);
    }
}
