using System.Text.RegularExpressions;

namespace UblkCsi.Cli.Tests;

/// <summary>The gRPC benchmark runs end to end over a real unix socket and prints its figures.</summary>
public class BenchGrpcTests
{
    [Fact]
    public async Task PrintsLatencyPercentilesAndCallsPerSecondAgainstTheBaseline()
    {
        var result = await CliProcess.RunAsync("bench-grpc", "--calls", "300", "--concurrency", "4");
        Assert.True(result.ExitCode == 0, result.StandardError);
        Assert.Matches(new Regex("p50", RegexOptions.IgnoreCase), result.StandardOutput);
        Assert.Matches(new Regex("p99", RegexOptions.IgnoreCase), result.StandardOutput);
        Assert.Matches(new Regex("calls/s", RegexOptions.IgnoreCase), result.StandardOutput);
    }
}
