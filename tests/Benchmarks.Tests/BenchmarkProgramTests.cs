using System.Text.RegularExpressions;
using UblkCsi.TestSupport;

namespace UblkCsi.Benchmarks.Tests;

/// <summary>The benchmark program: its commands, and the gRPC benchmark end to end over a real unix socket.</summary>
public class BenchmarkProgramTests
{
    [Fact]
    public async Task HelpListsEveryBenchmarkAndTheOperatorToolHasNone()
    {
        var bench = await DotnetProgram.RunAsync("ublk-csi-bench.dll", "help");
        var tool = await DotnetProgram.RunAsync("ublk-csi.dll", "help");

        Assert.Equal(0, bench.ExitCode);
        Assert.StartsWith("usage: ublk-csi-bench <command>", bench.StandardOutput);
        foreach (var command in new[] { "bench-engine", "bench-stores", "bench-grpc", "bench-flush-storm", "bench-s3-flush" })
        {
            Assert.Contains($"  {command} ", bench.StandardOutput);
            Assert.DoesNotContain(command, tool.StandardOutput);
        }
    }

    [Fact]
    public async Task PrintsLatencyPercentilesAndCallsPerSecondAgainstTheBaseline()
    {
        var result = await DotnetProgram.RunAsync("ublk-csi-bench.dll", "bench-grpc", "--calls", "300", "--concurrency", "4");
        Assert.True(result.ExitCode == 0, result.StandardError);
        Assert.Matches(new Regex("p50", RegexOptions.IgnoreCase), result.StandardOutput);
        Assert.Matches(new Regex("p99", RegexOptions.IgnoreCase), result.StandardOutput);
        Assert.Matches(new Regex("calls/s", RegexOptions.IgnoreCase), result.StandardOutput);
    }

    [Fact]
    public async Task StoresRunsTheRpcStoreAtDepthAndPrintsCpuAndAllocationsPerOperation()
    {
        var result = await DotnetProgram.RunAsync("ublk-csi-bench.dll", "bench-stores", "--store", "rpc", "--depth", "4", "--seconds", "1", "--size", "16Mi");

        Assert.True(result.ExitCode == 0, result.StandardError);
        Assert.Contains("queue depth 4", result.StandardOutput);
        Assert.Contains("cpu us/op", result.StandardOutput);
        // Every workload ran: a row of the rpc store with a positive IOPS figure each.
        Assert.Equal(4, Regex.Matches(result.StandardOutput, @"^rpc\s+\S.*?\s+\d+\.\d\s+[1-9]\d*\s", RegexOptions.Multiline).Count);
    }

    [Fact]
    public async Task StoresRefusesADepthOutsideItsRangeNamingIt()
    {
        var result = await DotnetProgram.RunAsync("ublk-csi-bench.dll", "bench-stores", "--depth", "0");

        Assert.Equal(2, result.ExitCode);
        Assert.Contains("--depth: expected an integer from 1 to 256", result.StandardError);
    }
}
