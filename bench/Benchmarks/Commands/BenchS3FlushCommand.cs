using System.Diagnostics;
using UblkCsi.Cli;
using UblkCsi.Engine;
using UblkCsi.Stores;
using UblkCsi.Stores.S3;
using UblkCsi.TestSupport;

namespace UblkCsi.Benchmarks;

/// <summary>
/// <c>ublk-csi bench-s3-flush</c>: FLUSH latency after a 4 KiB write on a small and on a huge s3
/// volume against the same s3rver, rounds interleaved so both see the same load; prints both and
/// the ratio of the medians. A FLUSH uploads only the dirty chunk and commits a journal naming the
/// changed map entry, so the ratio should stay near 1 whatever the sizes. A benchmark: it asserts nothing.
/// </summary>
internal static class BenchS3FlushCommand
{
    public const string Summary = "s3 FLUSH latency after a 4 KiB write: small vs. huge volume";

    private const string Usage =
        "usage: ublk-csi bench-s3-flush [--small SIZE] [--large SIZE] [--rounds N] [--dir DIR]\n" +
        "  --small   the small volume (default 1Gi)\n" +
        "  --large   the large volume (default 1Ti; the cache file is sparse)\n" +
        "  --rounds  measured flushes per volume (default 40, 5..10000), after 5 warm-up rounds\n" +
        "  --dir     directory for the caches (default: the temp directory)\n" +
        "Runs against an s3rver started by the command (tools/s3rver, installed with 'npm ci').";

    private const int Block = 4096;
    private const int WarmUpRounds = 5;

    public static async Task<int> RunAsync(string[] args)
    {
        long small = 1L << 30;
        long large = 1L << 40;
        var rounds = 40;
        var dir = Path.GetTempPath();
        for (var i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--small": small = CommandOptions.ParseSize("--small", CommandOptions.Value(args, ref i)); break;
                case "--large": large = CommandOptions.ParseSize("--large", CommandOptions.Value(args, ref i)); break;
                case "--rounds": rounds = CommandOptions.ParseInt("--rounds", CommandOptions.Value(args, ref i), 5, 10000); break;
                case "--dir": dir = CommandOptions.Value(args, ref i); break;
                case "-h" or "--help": Console.Out.WriteLine(Usage); return 0;
                default: throw new CliException($"unknown option '{args[i]}'\n{Usage}", 2);
            }
        }

        var scratch = Path.Combine(Path.GetFullPath(dir), $"ublk-s3-flush-{Environment.ProcessId}");
        Directory.CreateDirectory(scratch);
        try
        {
            await using var server = await LocalS3Server.StartAsync("bench-flush");
            await using var store = StoreRegistry.Open("s3", server.StoreParameters("bench-flush", scratch), LocalS3Server.StoreSecrets());
            await store.CreateVolumeAsync(new CreateVolumeRequest("small", small));
            await store.CreateVolumeAsync(new CreateVolumeRequest("large", large));
            await using var smallVolume = await store.OpenVolumeAsync("small");
            await using var largeVolume = await store.OpenVolumeAsync("large");

            var data = new byte[Block];
            var random = new Random(42);
            var smallTimes = new List<double>();
            var largeTimes = new List<double>();
            for (var round = 0; round < WarmUpRounds + rounds; round++)
            {
                // Alternate which goes first so neither always runs right after the other's upload.
                var first = round % 2 == 0;
                foreach (var (volume, times) in first
                    ? [(smallVolume, smallTimes), (largeVolume, largeTimes)]
                    : new[] { (largeVolume, largeTimes), (smallVolume, smallTimes) })
                {
                    random.NextBytes(data);
                    var offset = random.NextInt64(volume.Info.SizeBytes / Block) * Block;
                    await volume.WriteAsync(offset, data);
                    var watch = Stopwatch.StartNew();
                    await volume.FlushAsync();
                    if (round >= WarmUpRounds)
                    {
                        times.Add(watch.Elapsed.TotalMilliseconds);
                    }
                }
            }

            var s = Summarize(smallTimes);
            var l = Summarize(largeTimes);
            Console.WriteLine($"s3 FLUSH after a 4 KiB write at a random offset, {rounds} rounds each, s3rver on loopback");
            Console.WriteLine($"  {Gib(small),-8} volume: p50 {s.P50:0.00} ms, p90 {s.P90:0.00} ms, max {s.Max:0.00} ms");
            Console.WriteLine($"  {Gib(large),-8} volume: p50 {l.P50:0.00} ms, p90 {l.P90:0.00} ms, max {l.Max:0.00} ms");
            Console.WriteLine($"  ratio large/small: p50 {l.P50 / s.P50:0.00}x, p90 {l.P90 / s.P90:0.00}x");
            return 0;
        }
        finally
        {
            Directory.Delete(scratch, recursive: true);
        }
    }

    private static string Gib(long bytes) => $"{bytes / (double)(1L << 30):0.###} GiB";

    private static (double P50, double P90, double Max) Summarize(List<double> times)
    {
        times.Sort();
        return (times[times.Count / 2], times[(int)(times.Count * 0.9)], times[^1]);
    }
}
