using System.Diagnostics;
using Grpc.Core;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Win32.SafeHandles;
using UblkCsi.Engine.Threading;
using UblkCsi.GrpcEndpoints;
using UblkCsi.GrpcHosting;
using UblkCsi.Stores.Files;

using UblkCsi.Cli;

namespace UblkCsi.Benchmarks;

/// <summary>
/// <c>ublk-csi bench-flush-storm</c>: N file volumes write 4 KiB and flush in a loop while a gRPC
/// server on a unix socket answers CSI Probe every 5 ms; prints Probe latency percentiles with the
/// flushes on the engine's blocking workers and, as the baseline, with the same syncs on the .NET
/// thread pool (how the file store ran them before). A benchmark: it asserts nothing.
/// </summary>
internal static class BenchFlushStormCommand
{
    public const string Summary = "CSI Probe latency during a flush storm: blocking workers vs. the thread pool";

    private const string Usage =
        "usage: ublk-csi bench-flush-storm [--volumes N] [--seconds N] [--dir DIR]\n" +
        "  DIR: where the volume files go; a real filesystem (fdatasync on tmpfs costs nothing). Default /var/tmp";

    public static async Task<int> RunAsync(string[] args)
    {
        var volumes = 32;
        var seconds = 5;
        var dir = "/var/tmp";
        for (var i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--volumes": volumes = CommandOptions.ParseInt("--volumes", CommandOptions.Value(args, ref i), 1, 1024); break;
                case "--seconds": seconds = CommandOptions.ParseInt("--seconds", CommandOptions.Value(args, ref i), 1, 3600); break;
                case "--dir": dir = CommandOptions.Value(args, ref i); break;
                case "-h" or "--help": Console.Out.WriteLine(Usage); return 0;
                default: throw new CliException($"unknown option '{args[i]}'\n{Usage}", 2);
            }
        }

        // Short: the gRPC socket lives here too and sun_path holds 107 bytes.
        var scratch = Path.Combine(Path.GetFullPath(dir), $"ublk-storm-{Environment.ProcessId}");
        Directory.CreateDirectory(scratch);
        try
        {
            await using var server = new GrpcServer(new GrpcServerOptions { Endpoint = GrpcEndpoint.Unix(Path.Combine(scratch, "csi.sock")) }, NullLoggerFactory.Instance);
            server.AddService(new ProbeOnlyIdentity());
            await server.StartAsync();
            using var channel = GrpcChannels.Create(server.Endpoint);
            var client = new Csi.V1.Identity.IdentityClient(channel);
            var idle = await MeasureProbeAsync(client, TimeSpan.FromSeconds(Math.Min(seconds, 2)));
            Console.WriteLine($"flush storm over {volumes} volumes in {scratch}, {seconds} s per mode; CSI Probe every 5 ms");
            Console.WriteLine($"  idle               Probe {idle}");
            var pool = await StormAsync(client, scratch, volumes, seconds, onThreadPool: true);
            Console.WriteLine($"  thread pool        Probe {pool.Probe}; {pool.Flushes} flushes");
            var workers = await StormAsync(client, scratch, volumes, seconds, onThreadPool: false);
            Console.WriteLine($"  blocking workers   Probe {workers.Probe}; {workers.Flushes} flushes");
            Console.WriteLine($"  Probe p99: blocking workers {workers.Probe.P99:0.00} ms, thread pool {pool.Probe.P99:0.00} ms ({pool.Probe.P99 / workers.Probe.P99:0.0}x lower with the workers)");
            return 0;
        }
        finally
        {
            Directory.Delete(scratch, recursive: true);
        }
    }

    private static async Task<(Latencies Probe, long Flushes)> StormAsync(Csi.V1.Identity.IdentityClient client, string dir, int count, int seconds, bool onThreadPool)
    {
        var files = Enumerable.Range(0, count).Select(i => Path.Combine(dir, $"v{i}.img")).ToArray();
        foreach (var path in files)
        {
            using var f = File.Create(path);
            f.SetLength(4 << 20);
        }

        var volumes = files.Select((p, i) => FileVolume.Open($"v{i}", p, 4 << 20, readOnly: false)).ToArray();
        var handles = onThreadPool ? files.Select(p => File.OpenHandle(p, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite)).ToArray() : [];
        using var stop = new CancellationTokenSource();
        long flushes = 0;
        var storm = Enumerable.Range(0, count).Select(i => Task.Run(async () =>
        {
            var data = new byte[4096];
            var offset = 0L;
            while (!stop.IsCancellationRequested)
            {
                if (onThreadPool)
                {
                    // What the file store did before: a blocking sync parked on a thread-pool thread.
                    RandomAccess.Write(handles[i], data, offset);
                    await Task.Factory.StartNew(static h => RandomAccess.FlushToDisk((SafeFileHandle)h!), handles[i], CancellationToken.None, TaskCreationOptions.None, TaskScheduler.Default);
                }
                else
                {
                    await volumes[i].WriteAsync(offset, data);
                    await volumes[i].FlushAsync();
                }

                offset = (offset + 4096) % (4 << 20);
                Interlocked.Increment(ref flushes);
            }
        })).ToArray();

        var probe = await MeasureProbeAsync(client, TimeSpan.FromSeconds(seconds));
        await stop.CancelAsync();
        await Task.WhenAll(storm);
        foreach (var v in volumes)
        {
            await v.DisposeAsync();
        }

        foreach (var h in handles)
        {
            h.Dispose();
        }

        foreach (var path in files)
        {
            File.Delete(path);
        }

        return (probe, flushes);
    }

    private static async Task<Latencies> MeasureProbeAsync(Csi.V1.Identity.IdentityClient client, TimeSpan duration)
    {
        for (var i = 0; i < 20; i++)
        {
            try
            {
                await client.ProbeAsync(new Csi.V1.ProbeRequest()); // warm: connection, JIT
            }
            catch (RpcException)
            {
                // A connection lost in the previous run is re-established by the next call.
            }
        }

        var samples = new List<double>();
        var failed = 0;
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < duration)
        {
            var started = Stopwatch.GetTimestamp();
            try
            {
                await client.ProbeAsync(new Csi.V1.ProbeRequest());
            }
            catch (RpcException)
            {
                failed++; // a starved server can lose its HTTP/2 connection (keep-alive pings unanswered)
            }

            samples.Add(Stopwatch.GetElapsedTime(started).TotalMilliseconds);
            await Task.Delay(5);
        }

        samples.Sort();
        return new Latencies(samples[samples.Count / 2], samples[Math.Min(samples.Count - 1, (int)(samples.Count * 0.99))], samples[^1], samples.Count, failed);
    }

    private readonly record struct Latencies(double P50, double P99, double Max, int Calls, int Failed)
    {
        public override string ToString() => $"p50 {P50:0.00} ms, p99 {P99:0.00} ms, max {Max:0.00} ms ({Calls} calls, {Failed} failed)";
    }

    private sealed class ProbeOnlyIdentity : Csi.V1.Identity.IdentityBase
    {
        public override Task<Csi.V1.ProbeResponse> Probe(Csi.V1.ProbeRequest request, ServerCallContext context) =>
            Task.FromResult(new Csi.V1.ProbeResponse { Ready = true });
    }
}
