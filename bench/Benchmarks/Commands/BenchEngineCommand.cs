using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using UblkCsi.Engine;
using UblkCsi.Engine.Backends;
using UblkCsi.Engine.Backends.Metering;

using UblkCsi.Cli;

namespace UblkCsi.Benchmarks;

/// <summary>
/// <c>ublk-csi bench-engine</c>: the engine's cost, with the kernel's loop driver as the baseline in
/// the same boot. Runs fio 4 KiB random reads and writes at queue depth 32 on a loop device over a
/// tmpfs file, then on null- and memory-backed ublk devices, and reports IOPS, the ratio to loop and
/// CPU time per I/O (system-wide and this server process alone), and the cost of the node plugin's
/// per-volume metering (the null device again behind a <see cref="MeteredBackend"/>); then serves many idle devices from
/// this one process and reports the resident memory each costs.
/// </summary>
internal static class BenchEngineCommand
{
    public const string Summary = "fio on null/memory ublk devices vs loop on tmpfs; memory per idle device";

    private const string Usage =
        "usage: ublk-csi bench-engine [--seconds N] [--idle-devices N] [--queues N] [--size SIZE]\n" +
        "  --seconds: fio runtime per device (default 10); --idle-devices: devices for the memory figure (default 32)";

    public static async Task<int> RunAsync(string[] args)
    {
        var seconds = 10;
        var idleDevices = 32;
        int? queues = null;
        var size = 1L << 30;
        for (var i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--seconds": seconds = CommandOptions.ParseInt("--seconds", CommandOptions.Value(args, ref i), 1, 3600); break;
                case "--idle-devices": idleDevices = CommandOptions.ParseInt("--idle-devices", CommandOptions.Value(args, ref i), 1, 1024); break;
                case "--queues": queues = CommandOptions.ParseInt("--queues", CommandOptions.Value(args, ref i), 1, 64); break;
                case "--size": size = CommandOptions.ParseSize("--size", CommandOptions.Value(args, ref i)); break;
                case "-h" or "--help": Console.Out.WriteLine(Usage); return 0;
                default: throw new CliException($"unknown option '{args[i]}'\n{Usage}", 2);
            }
        }

        using var control = ControlDevice.Open();
        var deviceOptions = new UblkDeviceOptions { Queues = queues, EnableRecovery = false, RecoveryStateDirectory = null };
        Console.Out.WriteLine($"bench-engine: kernel {File.ReadAllText("/proc/sys/kernel/osrelease").Trim()}, {Environment.ProcessorCount} CPUs, fio bs=4k iodepth=32 direct, {seconds}s per run");
        Console.Out.WriteLine($"  {"workload",-10} {"device",-12} {"IOPS",9} {"vs loop",8} {"lat us",8} {"sys CPU us/IO",14} {"server CPU us/IO",17}");

        var loop = new Dictionary<string, FioResult>();
        await RunOnLoopOverTmpfs(size, async path =>
        {
            foreach (var workload in Workloads)
            {
                loop[workload] = await RunFio(path, workload, seconds, measureSelf: false);
                PrintRow(workload, "loop/tmpfs", loop[workload], loop[workload]);
            }
        });

        var results = new Dictionary<(string Device, string Workload), FioResult>();
        (string, Func<IBlockBackend>)[] devices =
        [
            ("ublk null", () => new NullBackend(size)),
            ("ublk memory", () => new MemoryBackend(size)),
            ("ublk metered", () => new MeteredBackend(new NullBackend(size), new IoMeter())),
        ];
        foreach (var (name, backendFactory) in devices)
        {
            await using var backend = backendFactory();
            var device = await UblkDevice.CreateAsync(control, backend, deviceOptions);
            try
            {
                // A first short run warms the JIT's tiered recompilation, which is not per-I/O cost.
                await RunFio(device.BlockDevicePath, Workloads[^1], Math.Max(1, seconds / 4), measureSelf: false);
                foreach (var workload in Workloads)
                {
                    var result = await RunFio(device.BlockDevicePath, workload, seconds, measureSelf: true);
                    results[(name, workload)] = result;
                    PrintRow(workload, name, result, loop[workload]);
                }
            }
            finally
            {
                await device.StopAsync();
            }
        }

        var meteringNanos = MeteringCostNanos(size);
        foreach (var workload in Workloads)
        {
            var plain = results[("ublk null", workload)];
            var metered = results[("ublk metered", workload)];
            Console.Out.WriteLine(
                $"  metering overhead, {workload}: {meteringNanos:0} ns per request measured in process = {meteringNanos / (1e9 / plain.Iops) * 100:0.000}% of a null-device request here; " +
                $"fio on the metered null device: {metered.Iops / plain.Iops:0.000}x the plain one's IOPS (run-to-run noise included)");
        }

        await MeasureIdleDevices(control, deviceOptions, idleDevices, size);
        return 0;
    }

    /// <summary>
    /// The added cost of metering one request, measured directly: the same synchronous reads through a
    /// null backend with and without a <see cref="MeteredBackend"/>, on this thread (fio's IOPS under
    /// emulation swing by more than the metering costs, so the fio rows alone cannot show it).
    /// </summary>
    private static double MeteringCostNanos(long size)
    {
        const int Requests = 2_000_000;
        Memory<byte> buffer = new byte[4096];
        var plain = new NullBackend(size);
        var metered = new MeteredBackend(new NullBackend(size), new IoMeter());
        double NanosPerRead(IBlockBackend backend)
        {
            var watch = Stopwatch.StartNew();
            for (var i = 0; i < Requests; i++)
            {
                backend.ReadAsync((i & 0xFFFF) * 4096L, buffer).GetAwaiter().GetResult();
            }

            return watch.Elapsed.TotalNanoseconds / Requests;
        }

        NanosPerRead(plain);
        NanosPerRead(metered);
        var best = double.MaxValue;
        for (var round = 0; round < 3; round++)
        {
            best = Math.Min(best, NanosPerRead(metered) - NanosPerRead(plain));
        }

        return Math.Max(0, best);
    }

    private static async Task MeasureIdleDevices(UblkControl control, UblkDeviceOptions options, int count, long size)
    {
        // Warm up once so JIT, the buffer pool and the control ring are not counted per device.
        await using (var warm = new NullBackend(size))
        {
            var device = await UblkDevice.CreateAsync(control, warm, options);
            await device.StopAsync();
        }

        CollectGarbage();
        var before = ResidentBytes();
        var threadsBefore = Process.GetCurrentProcess().Threads.Count;
        var devices = new List<UblkDevice>(count);
        var backends = new List<NullBackend>(count);
        var watch = Stopwatch.StartNew();
        try
        {
            for (var i = 0; i < count; i++)
            {
                var backend = new NullBackend(size);
                backends.Add(backend);
                devices.Add(await UblkDevice.CreateAsync(control, backend, options));
            }

            var created = watch.Elapsed;
            await Task.Delay(TimeSpan.FromSeconds(1));
            CollectGarbage();
            var after = ResidentBytes();
            var threads = Process.GetCurrentProcess().Threads.Count - threadsBefore;
            Console.Out.WriteLine(
                $"  {count} idle devices ({devices[0].Info.Queues} queue(s) x {devices[0].Info.Depth} each) in one process: " +
                $"resident +{(after - before) / 1024.0 / 1024.0:0.0} MiB, {(after - before) / 1024.0 / count:0} KiB per device, " +
                $"{threads / (double)count:0.#} threads per device, created in {created.TotalMilliseconds / count:0} ms per device");
        }
        finally
        {
            watch.Restart();
            foreach (var device in devices)
            {
                await device.StopAsync();
            }

            Console.Out.WriteLine($"  removed {devices.Count} devices in {watch.Elapsed.TotalMilliseconds / Math.Max(1, devices.Count):0} ms per device");
            foreach (var backend in backends)
            {
                await backend.DisposeAsync();
            }
        }
    }

    private static async Task RunOnLoopOverTmpfs(long size, Func<string, Task> run)
    {
        // /dev/shm is tmpfs on every Linux system; the sparse file's holes read as shared zero pages.
        var image = Path.Combine("/dev/shm", $"ublk-csi-bench-{Environment.ProcessId}.img");
        await using (var file = new FileStream(image, FileMode.CreateNew))
        {
            file.SetLength(size);
        }

        try
        {
            var loopDevice = (await ExternalProgram.RunAsync("losetup", "--find", "--show", image)).Trim();
            try
            {
                await run(loopDevice);
            }
            finally
            {
                await ExternalProgram.RunAsync("losetup", "--detach", loopDevice);
            }
        }
        finally
        {
            File.Delete(image);
        }
    }

    private static void PrintRow(string workload, string device, FioResult result, FioResult baseline) =>
        Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"  {workload,-10} {device,-12} {result.Iops,9:0} {result.Iops / baseline.Iops,8:0.00} {result.MeanLatencyMicros,8:0} {result.SystemCpuMicrosPerIo,14:0.0} {(double.IsNaN(result.ServerCpuMicrosPerIo) ? "-" : result.ServerCpuMicrosPerIo.ToString("0.0", CultureInfo.InvariantCulture)),17}"));

    private static readonly string[] Workloads = ["randread", "randwrite"];

    private static async Task<FioResult> RunFio(string device, string workload, int seconds, bool measureSelf)
    {
        var self = Process.GetCurrentProcess();
        var cpuBefore = SystemBusyTicks();
        var selfBefore = self.TotalProcessorTime;
        var json = await ExternalProgram.RunAsync(
            "fio", $"--name={workload}", $"--filename={device}", $"--rw={workload}", "--bs=4k", "--iodepth=32",
            "--ioengine=io_uring", "--direct=1", "--time_based", $"--runtime={seconds}", "--ramp_time=1",
            "--numjobs=1", "--output-format=json");
        var cpuAfter = SystemBusyTicks();
        self.Refresh();
        var selfCpu = self.TotalProcessorTime - selfBefore;

        using var doc = JsonDocument.Parse(json[json.IndexOf('{')..]);
        var job = doc.RootElement.GetProperty("jobs")[0];
        var stats = job.GetProperty(workload.EndsWith("read", StringComparison.Ordinal) ? "read" : "write");
        var iops = stats.GetProperty("iops").GetDouble();
        var ios = stats.GetProperty("total_ios").GetInt64();
        var errors = job.GetProperty("error").GetInt32();
        if (errors != 0 || ios == 0)
        {
            throw new CliException($"fio on {device} failed: error {errors}, {ios} I/Os");
        }

        // fio's ramp time is not in total_ios, so the CPU figures are slight overestimates for both.
        var ticksPerSecond = 100.0;
        var systemMicros = (cpuAfter - cpuBefore) / ticksPerSecond * 1e6;
        return new FioResult(
            iops,
            stats.GetProperty("clat_ns").GetProperty("mean").GetDouble() / 1000.0,
            systemMicros / ios,
            measureSelf ? selfCpu.TotalMicroseconds / ios : double.NaN);
    }

    /// <summary>Busy CPU time of the whole system in clock ticks (USER_HZ = 100), from /proc/stat.</summary>
    private static long SystemBusyTicks()
    {
        var fields = File.ReadLines("/proc/stat").First().Split(' ', StringSplitOptions.RemoveEmptyEntries);
        long busy = 0;
        for (var i = 1; i < fields.Length; i++)
        {
            // user nice system idle iowait irq softirq steal: idle (4) and iowait (5) are not busy.
            if (i is not 4 and not 5)
            {
                busy += long.Parse(fields[i], CultureInfo.InvariantCulture);
            }
        }

        return busy;
    }

    private static long ResidentBytes()
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
        {
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
            {
                return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) * 1024;
            }
        }

        throw new CliException("/proc/self/status has no VmRSS line");
    }

    private static void CollectGarbage()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
    }

    private readonly record struct FioResult(double Iops, double MeanLatencyMicros, double SystemCpuMicrosPerIo, double ServerCpuMicrosPerIo);
}
