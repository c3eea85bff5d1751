using UblkCsi.GrpcHosting.Wire;

namespace UblkCsi.GrpcHosting.Tests;

/// <summary>Header encodings and the endpoint syntax.</summary>
public sealed class WireFormatTests
{
    [Theory]
    [InlineData("1H", 3600_000_000_000)]
    [InlineData("2M", 120_000_000_000)]
    [InlineData("3S", 3_000_000_000)]
    [InlineData("250m", 250_000_000)]
    [InlineData("1500u", 1_500_000)]
    [InlineData("99999999n", 99_999_900)]
    [InlineData("0m", 0)]
    public void GrpcTimeoutParsesEveryUnit(string header, long nanoseconds)
    {
        Assert.True(GrpcTimeout.TryParse(header, out var timeout));
        Assert.Equal(nanoseconds / 100, timeout.Ticks);
    }

    [Theory]
    [InlineData("")]
    [InlineData("m")]
    [InlineData("10")]
    [InlineData("10x")]
    [InlineData("-5S")]
    [InlineData("123456789S")]
    [InlineData("1.5S")]
    public void GrpcTimeoutRejectsMalformedValues(string header) => Assert.False(GrpcTimeout.TryParse(header, out _));

    [Theory]
    [InlineData(0.5)]
    [InlineData(250)]
    [InlineData(5_000_000)]
    [InlineData(86_400_000d * 400)]
    public void FormattedTimeoutsParseBackWithoutShortening(double milliseconds)
    {
        var timeout = TimeSpan.FromMilliseconds(milliseconds);

        Assert.True(GrpcTimeout.TryParse(GrpcTimeout.Format(timeout), out var parsed));
        Assert.True(parsed >= timeout && parsed - timeout < TimeSpan.FromHours(1), $"{timeout} -> {parsed}");
    }

    [Theory]
    [InlineData("plain ascii", "plain ascii")]
    [InlineData("100% sure", "100%25 sure")]
    [InlineData("line\nbreak", "line%0Abreak")]
    [InlineData("ü", "%C3%BC")]
    public void StatusMessagesArePercentEncoded(string message, string encoded)
    {
        Assert.Equal(encoded, GrpcStatusMessage.Encode(message));
        Assert.Equal(message, GrpcStatusMessage.Decode(encoded));
    }

    [Fact]
    public void MalformedPercentEscapesDecodeAsLiteralText() => Assert.Equal("50%x and %", GrpcStatusMessage.Decode("50%x and %"));

    [Theory]
    [InlineData("unix:///csi/csi.sock", "/csi/csi.sock")]
    [InlineData("unix:/csi/csi.sock", "/csi/csi.sock")]
    public void UnixEndpointsParse(string text, string path)
    {
        var endpoint = GrpcEndpoint.Parse(text);

        Assert.Equal(GrpcEndpointKind.Unix, endpoint.Kind);
        Assert.Equal(path, endpoint.UnixPath);
        Assert.Equal("unix://" + path, endpoint.ToString());
    }

    [Theory]
    [InlineData("tcp://127.0.0.1:10000", "127.0.0.1", 10000)]
    [InlineData("tcp://localhost:0", "localhost", 0)]
    [InlineData("tcp://[::1]:443", "::1", 443)]
    [InlineData("tcp://csi-controller.kube-system.svc:9000", "csi-controller.kube-system.svc", 9000)]
    public void TcpEndpointsParse(string text, string host, int port)
    {
        var endpoint = GrpcEndpoint.Parse(text);

        Assert.Equal(GrpcEndpointKind.Tcp, endpoint.Kind);
        Assert.Equal(host, endpoint.Host);
        Assert.Equal(port, endpoint.Port);
        Assert.Equal(text, endpoint.ToString());
    }

    [Theory]
    [InlineData("", "empty")]
    [InlineData("/csi/csi.sock", "unsupported scheme")]
    [InlineData("http://x:1", "unsupported scheme")]
    [InlineData("unix://csi/csi.sock", "absolute")]
    [InlineData("unix:///csi/", "socket file")]
    [InlineData("unix:///csi/../etc/x.sock", "'..'")]
    [InlineData("tcp://host", "not a valid tcp address")]
    [InlineData("tcp://:80", "not a valid tcp address")]
    [InlineData("tcp://host:99999", "0-65535")]
    [InlineData("tcp://host:8x", "invalid port")]
    [InlineData("tcp://[::1:80", "not a valid tcp address")]
    [InlineData("tcp://bad host:80", "not a valid tcp address")]
    public void InvalidEndpointsFailWithAClearMessage(string text, string expected)
    {
        var e = Assert.Throws<FormatException>(() => GrpcEndpoint.Parse(text));

        Assert.Contains(expected, e.Message);
        Assert.True(text.Length == 0 || e.Message.Contains(text, StringComparison.Ordinal) || expected == "empty");
    }

    [Fact]
    public void OverlongUnixPathIsRejected()
    {
        var e = Assert.Throws<FormatException>(() => GrpcEndpoint.Parse("unix:///" + new string('a', 120) + ".sock"));

        Assert.Contains("107 bytes", e.Message);
    }
}
