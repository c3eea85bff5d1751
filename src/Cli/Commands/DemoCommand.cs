using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using UblkCsi.Engine;
using UblkCsi.Stores;

namespace UblkCsi.Cli;

/// <summary>
/// <c>ublk-csi demo</c>: the product's main job end to end on one machine. Attaches a file-backed
/// volume as /dev/ublkbN through the embedded engine, makes an ext4 filesystem, mounts it, writes
/// files with checksums, remounts with cold caches, reads them back and verifies them, checks the
/// filesystem, and tears everything down, printing how long each step took.
/// </summary>
internal static class DemoCommand
{
    public const string Summary = "attach a file-backed device, mkfs, mount, write, verify, tear down";

    private const string Usage =
        "usage: ublk-csi demo [--store file:PATH] [--size SIZE] [--data SIZE]\n" +
        "  --store: the volume (default: a sparse image file in $TMPDIR, deleted afterwards)\n" +
        "  --size: volume size (default 512M); --data: bytes of files to write and verify (default 64M)";

    private const int FileCount = 8;

    public static async Task<int> RunAsync(string[] args)
    {
        string? store = null;
        var size = 512L << 20;
        var dataBytes = 64L << 20;
        for (var i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--store": store = CommandOptions.Value(args, ref i); break;
                case "--size": size = CommandOptions.ParseSize("--size", CommandOptions.Value(args, ref i)); break;
                case "--data": dataBytes = CommandOptions.ParseSize("--data", CommandOptions.Value(args, ref i)); break;
                case "-h" or "--help": Console.Out.WriteLine(Usage); return 0;
                default: throw new CliException($"unknown option '{args[i]}'\n{Usage}", 2);
            }
        }

        if (dataBytes > size / 2)
        {
            throw new CliException($"--data must be at most half of --size ({size / 2} bytes) to leave room for ext4 metadata", 2);
        }

        var work = Directory.CreateTempSubdirectory("ublk-csi-demo-");
        var ownImage = store == null;
        store ??= "file:" + Path.Combine(work.FullName, "volume.img");
        var spec = AttachCommand.ParseSpec(store);
        if (spec.Type != "file")
        {
            throw new CliException("--store: the demo takes a file:PATH store", 2);
        }

        var steps = new StepTimer();
        var mountPoint = Directory.CreateDirectory(Path.Combine(work.FullName, "mnt")).FullName;
        Console.Out.WriteLine($"demo: volume {spec.Description}, {FormatBytes(size)}; kernel {File.ReadAllText("/proc/sys/kernel/osrelease").Trim()}");
        try
        {
            await using var backend = await AttachCommand.OpenBackendAsync(spec, size);
            using var control = ControlDevice.Open();
            var options = new UblkDeviceOptions
            {
                EnableRecovery = false,
                RecoveryStateDirectory = null,
                BackendDescription = spec.Description,
            };
            var device = await steps.TimeAsync("attach (ADD_DEV, SET_PARAMS, queues, START_DEV)", () => UblkDevice.CreateAsync(control, backend, options));
            var devicePath = device.BlockDevicePath;
            Console.Out.WriteLine($"demo: serving {devicePath} ({device.Info.Queues} queue(s) x {device.Info.Depth}, flags {device.Info.Flags.Describe()})");
            try
            {
                await steps.TimeAsync("mkfs.ext4", () => ExternalProgram.RunAsync("mkfs.ext4", "-q", "-F", devicePath));
                await steps.TimeAsync("mount", () => ExternalProgram.RunAsync("mount", "-t", "ext4", devicePath, mountPoint));
                var checksums = await steps.TimeAsync($"write {FormatBytes(dataBytes)} in {FileCount} files + fsync", () => WriteFiles(mountPoint, dataBytes));
                await steps.TimeAsync("umount (flushes to the store)", () => ExternalProgram.RunAsync("umount", mountPoint));
                await steps.TimeAsync("mount again (cold cache)", async () =>
                {
                    await ExternalProgram.RunAsync("blockdev", "--flushbufs", devicePath);
                    await ExternalProgram.RunAsync("mount", "-t", "ext4", devicePath, mountPoint);
                });
                await steps.TimeAsync($"read back and verify {FormatBytes(dataBytes)}", () => VerifyFiles(mountPoint, checksums));
                await steps.TimeAsync("umount", () => ExternalProgram.RunAsync("umount", mountPoint));
                await steps.TimeAsync("fsck.ext4 -fn", () => ExternalProgram.RunAsync("fsck.ext4", "-f", "-n", devicePath));
            }
            finally
            {
                await UnmountIfMounted(mountPoint);
                await steps.TimeAsync("detach (STOP_DEV, DEL_DEV)", () => device.StopAsync());
            }

            if (File.Exists(devicePath))
            {
                throw new CliException($"{devicePath} still exists after detach");
            }
        }
        finally
        {
            if (ownImage)
            {
                work.Delete(recursive: true);
            }
        }

        steps.Print(Console.Out);
        Console.Out.WriteLine($"demo: ok, {FileCount} files ({FormatBytes(dataBytes)}) written through ublk, read back after a remount, checksums match, fsck clean");
        return 0;
    }

    private static async Task<byte[][]> WriteFiles(string directory, long totalBytes)
    {
        var perFile = (int)(totalBytes / FileCount);
        var checksums = new byte[FileCount][];
        var buffer = new byte[perFile];
        for (var i = 0; i < FileCount; i++)
        {
            RandomNumberGenerator.Fill(buffer);
            checksums[i] = SHA256.HashData(buffer);
            await using var file = new FileStream(FilePath(directory, i), FileMode.CreateNew, FileAccess.Write, FileShare.None, 0);
            await file.WriteAsync(buffer);
            file.Flush(flushToDisk: true);
        }

        return checksums;
    }

    private static async Task VerifyFiles(string directory, byte[][] checksums)
    {
        for (var i = 0; i < checksums.Length; i++)
        {
            var data = await File.ReadAllBytesAsync(FilePath(directory, i));
            if (!SHA256.HashData(data).AsSpan().SequenceEqual(checksums[i]))
            {
                throw new CliException($"data mismatch: {FilePath(directory, i)} does not match what was written");
            }
        }
    }

    private static string FilePath(string directory, int index) => Path.Combine(directory, $"file-{index}.bin");

    private static async Task UnmountIfMounted(string mountPoint)
    {
        var mounts = await File.ReadAllTextAsync("/proc/self/mounts");
        if (mounts.Contains($" {mountPoint} ", StringComparison.Ordinal))
        {
            await ExternalProgram.RunAsync("umount", mountPoint);
        }
    }

    private static string FormatBytes(long bytes) =>
        bytes >= 1L << 30 ? $"{bytes / (double)(1L << 30):0.#} GiB" : $"{bytes / (double)(1L << 20):0.#} MiB";

    /// <summary>Runs steps and remembers how long each took, for the closing table.</summary>
    private sealed class StepTimer
    {
        private readonly List<(string Step, TimeSpan Took)> _steps = [];

        public async Task TimeAsync(string step, Func<Task> action) => await TimeAsync(step, async () =>
        {
            await action();
            return true;
        });

        public async Task<T> TimeAsync<T>(string step, Func<Task<T>> action)
        {
            var watch = Stopwatch.StartNew();
            var result = await action();
            var took = watch.Elapsed;
            _steps.Add((step, took));
            Console.Out.WriteLine($"demo: {step}: {took.TotalMilliseconds.ToString("0", CultureInfo.InvariantCulture)} ms");
            return result;
        }

        public void Print(TextWriter writer)
        {
            writer.WriteLine();
            writer.WriteLine($"{"step",-52} {"ms",8}");
            foreach (var (step, took) in _steps)
            {
                writer.WriteLine($"{step,-52} {took.TotalMilliseconds.ToString("0.0", CultureInfo.InvariantCulture),8}");
            }
        }
    }
}
