using System.Diagnostics;
using System.Globalization;
using Amazon.S3;
using Amazon.S3.Model;
using Microsoft.Win32.SafeHandles;
using UblkCsi.Engine;
using UblkCsi.Stores;
using UblkCsi.Stores.S3;
using UblkCsi.TestSupport;

using UblkCsi.Cli;

namespace UblkCsi.Benchmarks;

/// <summary>
/// <c>ublk-csi bench-stores</c>: data-path throughput of each store through the store contract
/// (IVolumeStore + IBlockBackend), each workload next to a raw baseline measured in the same run on
/// the same medium: pread/pwrite on a plain file in the same directory for file, plain
/// PutObject/GetObject of the same sizes on the same s3rver for s3, a byte-array copy for memory.
/// Write figures include the final flush (durable bytes per second).
/// </summary>
internal static class BenchStoresCommand
{
    public const string Summary = "benchmark store data paths (file, s3, memory) against raw baselines";

    private const string Usage =
        "usage: ublk-csi bench-stores [--store file|s3|memory|rpc|all] [--seconds N] [--size BYTES] [--depth N] [--dir PATH]\n" +
        "  --store     which store to measure (default all)\n" +
        "  --seconds   duration of each workload (default 3, 1..600)\n" +
        "  --size      volume size (default 256Mi; sequential runs wrap around)\n" +
        "  --depth     I/Os in flight at once (default 1, 1..256); a store that batches (rpc) shows it only at depth\n" +
        "  --dir       directory for file-store volumes and caches (default: the temp directory)\n" +
        "s3 runs against an s3rver started by the command (tools/s3rver, installed with 'npm ci').";

    private const int SequentialBlock = 1 << 20;
    private const int RandomBlock = 4096;

    /// <summary>
    /// The stores this command can measure, by name. Each opens a store through the registry and a
    /// raw baseline on the same medium. (rpc: add ("rpc", ...) running the file store behind the
    /// block-store server over loopback, with the file store measured in-process as its baseline.)
    /// </summary>
    private static readonly (string Name, Func<BenchContext, Task<BenchTarget>> Open)[] Targets =
    [
        ("memory", OpenMemoryAsync),
        ("file", OpenFileAsync),
        ("s3", OpenS3Async),
        ("rpc", OpenRpcAsync),
    ];

    public static async Task<int> RunAsync(string[] args)
    {
        var which = "all";
        var seconds = 3;
        var depth = 1;
        long size = 256L << 20;
        var dir = Path.GetTempPath();
        for (var i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--store":
                    which = Value(args, ref i);
                    if (which != "all" && !Targets.Any(t => t.Name == which))
                    {
                        throw new CliException($"--store: '{which}' is not one of {string.Join(", ", Targets.Select(t => t.Name))}, all", 2);
                    }

                    break;
                case "--seconds":
                    if (!int.TryParse(Value(args, ref i), NumberStyles.None, CultureInfo.InvariantCulture, out seconds) || seconds is < 1 or > 600)
                    {
                        throw new CliException("--seconds: expected an integer from 1 to 600", 2);
                    }

                    break;
                case "--size":
                    if (!ByteSize.TryParse(Value(args, ref i), out size) || size < 16 << 20 || size % RandomBlock != 0)
                    {
                        throw new CliException("--size: expected a size of at least 16Mi, a multiple of 4Ki (e.g. 256Mi, 1Gi)", 2);
                    }

                    break;
                case "--depth":
                    if (!int.TryParse(Value(args, ref i), NumberStyles.None, CultureInfo.InvariantCulture, out depth) || depth is < 1 or > 256)
                    {
                        throw new CliException("--depth: expected an integer from 1 to 256", 2);
                    }

                    break;
                case "--dir":
                    dir = Value(args, ref i);
                    if (!Directory.Exists(dir))
                    {
                        throw new CliException($"--dir: '{dir}' is not an existing directory", 2);
                    }

                    break;
                case "-h" or "--help":
                    Console.Out.WriteLine(Usage);
                    return 0;
                default:
                    throw new CliException($"unknown option '{args[i]}'\n{Usage}", 2);
            }
        }

        var work = Directory.CreateDirectory(Path.Combine(Path.GetFullPath(dir), $"ublk-bench-stores-{Guid.NewGuid():N}"));
        try
        {
            var context = new BenchContext(work.FullName, size, TimeSpan.FromSeconds(seconds), depth);
            Console.Out.WriteLine($"bench-stores: {seconds}s per workload, volume {ByteSize.Format(size)}, queue depth {depth}, {Environment.ProcessorCount} CPUs, work dir {work.FullName}");
            Console.Out.WriteLine("each store row is followed by its raw baseline measured in this run; 'ratio' = store / baseline throughput;");
            Console.Out.WriteLine("'cpu us/op' and 'alloc B/op' are the whole process's (for rpc: client and server together) during the store's runs");
            Console.Out.WriteLine();
            Console.Out.WriteLine($"{"store",-8} {"workload",-22} {"MiB/s",10} {"IOPS",10}   {"baseline",-30} {"MiB/s",10} {"IOPS",10} {"ratio",7} {"cpu us/op",10} {"alloc B/op",10}");
            foreach (var (name, open) in Targets)
            {
                if (which is "all" || which == name)
                {
                    await using var target = await open(context);
                    await RunTargetAsync(name, target, context);
                }
            }

            return 0;
        }
        catch (InvalidOperationException e) when (e.Message.Contains("s3rver", StringComparison.Ordinal) || e.Message.Contains("Node.js", StringComparison.Ordinal))
        {
            throw new CliException(e.Message);
        }
        finally
        {
            work.Delete(recursive: true);
        }
    }

    private static async Task RunTargetAsync(string name, BenchTarget target, BenchContext context)
    {
        var volume = await target.Store.CreateVolumeAsync(new CreateVolumeRequest("bench", context.SizeBytes));
        var sequentialBuffer = Filled(SequentialBlock);
        var randomBuffer = Filled(RandomBlock);
        var readBuffer = new byte[SequentialBlock];
        var sequentialSlots = context.SizeBytes / SequentialBlock;
        var randomSlots = context.SizeBytes / RandomBlock;

        await using (var backend = await target.Store.OpenVolumeAsync(volume.Id))
        {
            // One pass at most: rewriting the same bytes in a cache and flushing once would
            // count bytes that never had to reach the medium.
            var (store, raw) = await CompareAsync(context, SequentialBlock,
                i => backend.WriteAsync(i % sequentialSlots * SequentialBlock, sequentialBuffer), () => backend.FlushAsync(),
                i => target.Baseline.WriteAsync(i % sequentialSlots * SequentialBlock, sequentialBuffer), target.Baseline.FlushAsync,
                maxOps: sequentialSlots);
            Print(name, "seq write 1MiB+flush", store, target.Baseline.Name, raw);

            (store, raw) = await CompareAsync(context, SequentialBlock,
                i => backend.ReadAsync(i % sequentialSlots * SequentialBlock, readBuffer), null,
                i => target.Baseline.ReadAsync(i % sequentialSlots * SequentialBlock, readBuffer), null);
            Print(name, "seq read 1MiB", store, target.Baseline.Name, raw);

            (store, raw) = await CompareAsync(context, RandomBlock,
                i => backend.WriteAsync(Scatter(i, randomSlots) * RandomBlock, randomBuffer), () => backend.FlushAsync(),
                i => target.Baseline.WriteAsync(Scatter(i, randomSlots) * RandomBlock, randomBuffer), target.Baseline.FlushAsync);
            Print(name, "rand write 4KiB+flush", store, target.Baseline.Name, raw);

            (store, raw) = await CompareAsync(context, RandomBlock,
                i => backend.ReadAsync(Scatter(i, randomSlots) * RandomBlock, readBuffer.AsMemory(0, RandomBlock)), null,
                i => target.Baseline.ReadAsync(Scatter(i, randomSlots) * RandomBlock, readBuffer.AsMemory(0, RandomBlock)), null);
            Print(name, "rand read 4KiB", store, target.Baseline.Name, raw);
        }

        if (target.ReopenCold is { } reopenCold)
        {
            // What a node without the cache sees: every chunk comes from the bucket.
            await using var cold = await reopenCold(volume.Id);
            var store = await MeasureAsync(context, SequentialBlock, i => cold.ReadAsync(i % sequentialSlots * SequentialBlock, readBuffer), null, maxOps: sequentialSlots);
            var raw = await MeasureAsync(context, SequentialBlock, i => target.Baseline.ReadAsync(i % sequentialSlots * SequentialBlock, readBuffer), null);
            Print(name, "seq read 1MiB (cold)", store, target.Baseline.Name, raw);
        }
    }

    /// <summary>
    /// Store and baseline in A-B-B-A halves of the duration each, so drift of the machine during the
    /// run (page-cache writeback, a warming disk or server) weighs on both sides alike.
    /// </summary>
    private static async Task<(Measurement Store, Measurement Baseline)> CompareAsync(BenchContext context, int blockBytes,
        Func<long, ValueTask> storeOperation, Func<ValueTask>? storeFinish, Func<long, ValueTask> baselineOperation, Func<ValueTask>? baselineFinish,
        long maxOps = long.MaxValue)
    {
        // Warm-up (JIT tiers, first-touch allocation, caches) for both sides, not counted.
        var warmUp = context with { Duration = context.Duration / 10 };
        await MeasureAsync(warmUp, blockBytes, storeOperation, storeFinish, maxOps);
        await MeasureAsync(warmUp, blockBytes, baselineOperation, baselineFinish, maxOps);

        var half = context with { Duration = context.Duration / 2 };
        var store = await MeasureAsync(half, blockBytes, storeOperation, storeFinish, maxOps);
        var baseline = await MeasureAsync(half, blockBytes, baselineOperation, baselineFinish, maxOps);
        baseline += await MeasureAsync(half, blockBytes, baselineOperation, baselineFinish, maxOps);
        store += await MeasureAsync(half, blockBytes, storeOperation, storeFinish, maxOps);
        return (store, baseline);
    }

    /// <summary>
    /// Runs <paramref name="operation"/> from <see cref="BenchContext.Depth"/> workers at once, each taking
    /// the next operation index, until the duration is up or <paramref name="maxOps"/> were started.
    /// </summary>
    private static async Task<Measurement> MeasureAsync(BenchContext context, int blockBytes, Func<long, ValueTask> operation, Func<ValueTask>? finish, long maxOps = long.MaxValue)
    {
        var cpuBefore = Environment.CpuUsage.TotalTime;
        var allocatedBefore = GC.GetTotalAllocatedBytes(precise: true);
        var watch = Stopwatch.StartNew();
        long started = -1, done = 0;
        async Task WorkAsync()
        {
            while (watch.Elapsed < context.Duration)
            {
                var i = Interlocked.Increment(ref started);
                if (i >= maxOps)
                {
                    return;
                }

                await operation(i);
                Interlocked.Increment(ref done);
            }
        }

        var workers = new Task[context.Depth];
        for (var w = 0; w < workers.Length; w++)
        {
            workers[w] = WorkAsync();
        }

        await Task.WhenAll(workers);
        if (finish is not null)
        {
            await finish();
        }

        return new Measurement(done, done * blockBytes, watch.Elapsed, Environment.CpuUsage.TotalTime - cpuBefore, GC.GetTotalAllocatedBytes(precise: true) - allocatedBefore);
    }

    /// <summary>Operation <paramref name="i"/>'s slot out of <paramref name="slots"/>, scattered (the same sequence on every run and side).</summary>
    private static long Scatter(long i, long slots) => (long)((ulong)(i + 1) * 0x9E3779B97F4A7C15UL % (ulong)slots);

    private static void Print(string store, string workload, Measurement measured, string baselineName, Measurement baseline)
    {
        var ratio = baseline.MiBPerSecond > 0 ? measured.MiBPerSecond / baseline.MiBPerSecond : double.NaN;
        Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{store,-8} {workload,-22} {measured.MiBPerSecond,10:F1} {measured.Iops,10:F0}   {baselineName,-30} {baseline.MiBPerSecond,10:F1} {baseline.Iops,10:F0} {ratio,7:F2} {measured.CpuMicrosecondsPerOp,10:F1} {measured.AllocatedBytesPerOp,10:F0}"));
    }

    private static async Task<BenchTarget> OpenMemoryAsync(BenchContext context)
    {
        var store = StoreRegistry.Open("memory", new Dictionary<string, string>());
        return await Task.FromResult(new BenchTarget(store, new ArrayBaseline(context.SizeBytes), null));
    }

    private static Task<BenchTarget> OpenFileAsync(BenchContext context)
    {
        var root = Directory.CreateDirectory(Path.Combine(context.WorkDirectory, "file-store")).FullName;
        var store = StoreRegistry.Open("file", new Dictionary<string, string> { ["root"] = root });
        return Task.FromResult(new BenchTarget(store, new FileBaseline(Path.Combine(context.WorkDirectory, "raw.img"), context.SizeBytes), null));
    }

    private static async Task<BenchTarget> OpenS3Async(BenchContext context)
    {
        var server = await LocalS3Server.StartAsync("bench");
        var cache = Path.Combine(context.WorkDirectory, "s3-cache");
        var parameters = server.StoreParameters("bench-store", cache);
        var store = StoreRegistry.Open("s3", parameters, LocalS3Server.StoreSecrets());
        var client = new AmazonS3Client(LocalS3Server.Credentials, new AmazonS3Config
        {
            ServiceURL = server.Endpoint,
            ForcePathStyle = true,
            AuthenticationRegion = "us-east-1",
            RequestChecksumCalculation = Amazon.Runtime.RequestChecksumCalculation.WHEN_REQUIRED,
            ResponseChecksumValidation = Amazon.Runtime.ResponseChecksumValidation.WHEN_REQUIRED,
        });

        // The cold pass reopens through a second store whose cache directory is empty.
        var coldParameters = new Dictionary<string, string>(parameters) { ["cacheDir"] = Path.Combine(context.WorkDirectory, "s3-cold-cache") };
        var coldStore = StoreRegistry.Open("s3", coldParameters, LocalS3Server.StoreSecrets());
        return new BenchTarget(store, new S3Baseline(client, server.Bucket), id => coldStore.OpenVolumeAsync(id), [coldStore, server]);
    }

    private static async Task<BenchTarget> OpenRpcAsync(BenchContext context)
    {
        var rpc = await RpcBenchTarget.StartAsync(context.WorkDirectory, context.SizeBytes);
        return new BenchTarget(rpc.Store, new VolumeBaseline(RpcBenchTarget.BaselineName, rpc.Baseline), null, [rpc]);
    }

    private static byte[] Filled(int length)
    {
        var data = new byte[length];
        new Random(7).NextBytes(data);
        return data;
    }

    private static string Value(string[] args, ref int i) =>
        ++i < args.Length ? args[i] : throw new CliException($"{args[i - 1]} needs a value", 2);

    private sealed record BenchContext(string WorkDirectory, long SizeBytes, TimeSpan Duration, int Depth);

    /// <summary>Operations done, their bytes and time, and the process's CPU time and allocations meanwhile.</summary>
    private readonly record struct Measurement(long Ops, long Bytes, TimeSpan Elapsed, TimeSpan Cpu, long Allocated)
    {
        public double MiBPerSecond => Bytes / 1048576.0 / Elapsed.TotalSeconds;

        public double Iops => Ops / Elapsed.TotalSeconds;

        public double CpuMicrosecondsPerOp => Ops == 0 ? double.NaN : Cpu.TotalMicroseconds / Ops;

        public double AllocatedBytesPerOp => Ops == 0 ? double.NaN : (double)Allocated / Ops;

        public static Measurement operator +(Measurement a, Measurement b) =>
            new(a.Ops + b.Ops, a.Bytes + b.Bytes, a.Elapsed + b.Elapsed, a.Cpu + b.Cpu, a.Allocated + b.Allocated);
    }

    /// <summary>A store under test, its raw baseline, and optionally a way to reopen a volume with a cold cache.</summary>
    private sealed class BenchTarget(IVolumeStore store, IRawBaseline baseline, Func<string, Task<IBlockBackend>>? reopenCold, IAsyncDisposable[]? owned = null) : IAsyncDisposable
    {
        public IVolumeStore Store => store;

        public IRawBaseline Baseline => baseline;

        public Func<string, Task<IBlockBackend>>? ReopenCold => reopenCold;

        public async ValueTask DisposeAsync()
        {
            await store.DisposeAsync();
            await baseline.DisposeAsync();
            foreach (var o in owned ?? [])
            {
                await o.DisposeAsync();
            }
        }
    }

    /// <summary>The same operations with nothing of ours in between.</summary>
    private interface IRawBaseline : IAsyncDisposable
    {
        string Name { get; }

        ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data);

        ValueTask ReadAsync(long offset, Memory<byte> buffer);

        ValueTask FlushAsync();
    }

    private sealed class ArrayBaseline(long size) : IRawBaseline
    {
        private readonly byte[] _bytes = new byte[size];

        public string Name => "byte[] copy";

        public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data)
        {
            data.Span.CopyTo(_bytes.AsSpan((int)offset));
            return default;
        }

        public ValueTask ReadAsync(long offset, Memory<byte> buffer)
        {
            _bytes.AsSpan((int)offset, buffer.Length).CopyTo(buffer.Span);
            return default;
        }

        public ValueTask FlushAsync() => default;

        public ValueTask DisposeAsync() => default;
    }

    private sealed class FileBaseline : IRawBaseline
    {
        private readonly string _path;
        private readonly SafeFileHandle _file;

        public FileBaseline(string path, long size)
        {
            _path = path;
            _file = File.OpenHandle(path, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None);
            RandomAccess.SetLength(_file, size);
        }

        public string Name => "pread/pwrite, same fs";

        public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data)
        {
            RandomAccess.Write(_file, data.Span, offset);
            return default;
        }

        public ValueTask ReadAsync(long offset, Memory<byte> buffer)
        {
            RandomAccess.Read(_file, buffer.Span, offset);
            return default;
        }

        public ValueTask FlushAsync()
        {
            RandomAccess.FlushToDisk(_file);
            return default;
        }

        public ValueTask DisposeAsync()
        {
            _file.Dispose();
            File.Delete(_path);
            return default;
        }
    }

    /// <summary>A volume of another store, in-process, as the baseline (rpc: the file store without the protocol).</summary>
    private sealed class VolumeBaseline(string name, IBlockBackend volume) : IRawBaseline
    {
        public string Name => name;

        public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data) => volume.WriteAsync(offset, data);

        public ValueTask ReadAsync(long offset, Memory<byte> buffer) => volume.ReadAsync(offset, buffer);

        public ValueTask FlushAsync() => volume.FlushAsync();

        public ValueTask DisposeAsync() => default; // the target that opened the volume closes it
    }

    private sealed class S3Baseline(AmazonS3Client client, string bucket) : IRawBaseline
    {
        public string Name => "PutObject/GetObject, same s3rver";

        public async ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data)
        {
            using var stream = new MemoryStream(data.ToArray(), writable: false);
            await client.PutObjectAsync(new PutObjectRequest
            {
                BucketName = bucket,
                Key = Key(offset, data.Length),
                InputStream = stream,
                UseChunkEncoding = false,
            });
        }

        public async ValueTask ReadAsync(long offset, Memory<byte> buffer)
        {
            try
            {
                using var response = await client.GetObjectAsync(bucket, Key(offset, buffer.Length));
                await response.ResponseStream.ReadExactlyAsync(buffer[..(int)Math.Min(buffer.Length, response.ContentLength)]);
            }
            catch (AmazonS3Exception e) when (e.StatusCode == System.Net.HttpStatusCode.NotFound)
            {
                buffer.Span.Clear(); // never written in the write phase: absent, like an absent chunk
            }
        }

        public ValueTask FlushAsync() => default; // a completed PutObject is durable

        public ValueTask DisposeAsync()
        {
            client.Dispose();
            return default;
        }

        private static string Key(long offset, int length) => string.Create(CultureInfo.InvariantCulture, $"raw/{length}/{offset:x12}");
    }
}
