using System.Globalization;
using System.Runtime.InteropServices;
using UblkCsi.Engine;
using UblkCsi.Engine.Backends;
using UblkCsi.Engine.Backends.Qos;
using UblkCsi.Stores;

namespace UblkCsi.Cli;

/// <summary>
/// <c>ublk-csi attach</c>: serves a store as /dev/ublkbN in the foreground until SIGINT/SIGTERM,
/// then removes the device. The device path is the first line of stdout, for scripts.
/// </summary>
internal static class AttachCommand
{
    public const string Summary = "serve a store as /dev/ublkbN until SIGINT/SIGTERM";

    private const string Usage =
        "usage: ublk-csi attach --store SPEC [--size SIZE] [--queues N] [--depth N] [--max-io SIZE]\n" +
        "                       [--state-dir DIR] [--no-recovery] [--keep-on-exit] [--no-user-copy] [--no-zero-copy]\n" +
        "                       [--stats] [--qos LIMITS]\n" +
        "  SPEC: " + StoreSpec.Forms + "\n" +
        "  SIZE: bytes with an optional K, M, G or T suffix (powers of 1024); required for null and memory\n" +
        "  --max-io SIZE: largest request; default the store's preference (nbd: 1M), else 512K\n" +
        "  --keep-on-exit: on SIGINT/SIGTERM leave the device for 'ublk-csi recover' instead of removing it\n" +
        "  --no-user-copy: per-tag kernel-copied buffers instead of USER_COPY (more memory; for old kernels and tests)\n" +
        "  --no-zero-copy: copy through user memory even where zero copy is offered (Linux 6.16+, file with O_DIRECT, nbd)\n" +
        "  --qos LIMITS: KEY=VALUE,... with keys maxIops, maxBytesPerSecond, maxReadIops, maxWriteIops,\n" +
        "                maxReadBytesPerSecond, maxWriteBytesPerSecond, burstSeconds (as in StorageClass parameters)";

    public static async Task<int> RunAsync(string[] args)
    {
        string? store = null;
        long? size = null;
        int? queues = null;
        var depth = UblkDeviceOptions.DefaultDepth;
        int? maxIo = null; // the store's preference, else the engine's default
        var stateDir = UblkDeviceOptions.DefaultRecoveryStateDirectory;
        var recovery = true;
        var stats = false;
        var keepOnExit = false;
        var userCopy = true;
        var zeroCopy = true;
        QosLimits? qos = null;
        for (var i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--store": store = CommandOptions.Value(args, ref i); break;
                case "--size": size = CommandOptions.ParseSize("--size", CommandOptions.Value(args, ref i)); break;
                case "--queues": queues = CommandOptions.ParseInt("--queues", CommandOptions.Value(args, ref i), 1, 4096); break;
                case "--depth": depth = CommandOptions.ParseInt("--depth", CommandOptions.Value(args, ref i), 1, 4096); break;
                case "--max-io": maxIo = (int)CommandOptions.ParseSize("--max-io", CommandOptions.Value(args, ref i), max: 32L << 20); break;
                case "--state-dir": stateDir = CommandOptions.Value(args, ref i); break;
                case "--no-recovery": recovery = false; break;
                case "--stats": stats = true; break;
                case "--keep-on-exit": keepOnExit = true; break;
                case "--no-user-copy": userCopy = false; break;
                case "--no-zero-copy": zeroCopy = false; break;
                case "--qos": qos = ParseQos(CommandOptions.Value(args, ref i)); break;
                case "-h" or "--help": Console.Out.WriteLine(Usage); return 0;
                default: throw new CliException($"unknown option '{args[i]}'\n{Usage}", 2);
            }
        }

        if (keepOnExit && !recovery)
        {
            throw new CliException("--keep-on-exit needs user recovery; drop --no-recovery", 2);
        }

        if (store == null)
        {
            throw new CliException($"--store is required\n{Usage}", 2);
        }

        var spec = ParseSpec(store);
        if (size == null && spec.Type is "null" or "memory")
        {
            throw new CliException($"--size is required for a {spec.Type} store", 2);
        }

        var options = new UblkDeviceOptions
        {
            Queues = queues,
            Depth = depth,
            MaxIoBytes = maxIo,
            EnableRecovery = recovery,
            PreferUserCopy = userCopy,
            AutoBufferRegistration = zeroCopy,
            RecoveryStateDirectory = stateDir,
            BackendDescription = spec.Description,
        };
        await using var storeEvents = new StoreEventLog();
        var opened = await OpenBackendAsync(spec, size);
        await using var backend = qos is null ? opened : new ThrottledBackend(opened, qos);
        return await ServeAsync(options, backend, stats, keepOnExit, (control, served) => UblkDevice.CreateAsync(control, served, options));
    }

    private static QosLimits ParseQos(string text)
    {
        var pairs = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var item in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var equals = item.IndexOf('=', StringComparison.Ordinal);
            if (equals <= 0 || !QosLimits.IsParameter(item[..equals]))
            {
                throw new CliException($"--qos: '{item}' is not KEY=VALUE with KEY one of {string.Join(", ", QosLimits.ParameterNames)}", 2);
            }

            pairs[item[..equals]] = item[(equals + 1)..];
        }

        try
        {
            return QosLimits.Parse(pairs);
        }
        catch (ArgumentException e)
        {
            throw new CliException("--qos: " + e.Message.Split(" (Parameter", 2)[0], 2);
        }
    }

    /// <summary>
    /// Creates or adopts a device with <paramref name="start"/>, prints its path, serves until a
    /// signal or an outside stop, then removes it, or with <paramref name="keepOnExit"/> leaves it
    /// QUIESCED for <c>ublk-csi recover</c> (a handover without I/O errors). Shared by attach and recover.
    /// </summary>
    internal static async Task<int> ServeAsync(UblkDeviceOptions options, IBlockBackend backend, bool stats, bool keepOnExit, Func<UblkControl, IBlockBackend, Task<UblkDevice>> start)
    {
        var counting = stats ? new CountingBackend(backend) : null;
        IBlockBackend served = counting ?? backend;
        var stopRequested = new TaskCompletionSource<PosixSignal>(TaskCreationOptions.RunContinuationsAsynchronously);
        using var onInterrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);
        using var onTerminate = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal);

        using var control = ControlDevice.Open();
        UblkDevice device;
        var startClock = System.Diagnostics.Stopwatch.StartNew();
        try
        {
            device = await start(control, served);
        }
        catch (Exception e) when (e is UblkException or Engine.IoUring.IoUringException)
        {
            // The engine names its option; the operator knows the flags.
            throw new CliException(e.Message.Replace("choose another RecoveryStateDirectory, or disable recovery", "use --state-dir DIR or --no-recovery", StringComparison.Ordinal));
        }
        catch (ArgumentException e)
        {
            throw new CliException(e.Message, 2);
        }

        Console.Out.WriteLine(device.BlockDevicePath);
        Console.Out.Flush();
        Console.Error.WriteLine(
            $"ublk-csi: serving {device.BlockDevicePath} ({device.Parameters.SizeBytes} bytes, {device.Info.Queues} queue(s) x {device.Info.Depth}, " +
            $"flags {device.Info.Flags.Describe()}, recovery {(device.RecoveryEnabled ? "on" : "off")}; ready in {startClock.ElapsedMilliseconds} ms); " +
            (keepOnExit ? "SIGINT/SIGTERM leaves it for recover" : "SIGINT/SIGTERM removes it"));

        var finished = await Task.WhenAny(stopRequested.Task, device.Completion);
        var exitCode = 0;
        if (finished == device.Completion)
        {
            if (device.Completion.IsFaulted)
            {
                Console.Error.WriteLine($"ublk-csi: {device.Completion.Exception!.InnerException!.Message}");
                exitCode = 1;
            }
            else
            {
                Console.Error.WriteLine($"ublk-csi: {device.BlockDevicePath} was stopped from outside");
            }
        }

        try
        {
            if (keepOnExit && finished == stopRequested.Task && device.RecoveryEnabled)
            {
                await device.ReleaseAsync();
                Console.Error.WriteLine($"ublk-csi: left {device.BlockDevicePath} for 'ublk-csi recover {device.Id}'; its I/O waits until then");
            }
            else
            {
                await device.StopAsync();
            }
        }
        catch (UblkException e)
        {
            Console.Error.WriteLine($"ublk-csi: shutting down ublk device {device.Id}: {e.Message}");
            exitCode = 1;
        }

        if (counting != null)
        {
            PrintStatistics(device, counting);
        }

        return exitCode;

        void OnSignal(PosixSignalContext context)
        {
            // Handled here: the device is removed in order, then the process exits.
            context.Cancel = true;
            stopRequested.TrySetResult(context.Signal);
        }
    }

    internal static StoreSpec ParseSpec(string text)
    {
        try
        {
            return StoreSpec.Parse(text);
        }
        catch (StoreException e)
        {
            throw new CliException($"--store: {e.Message}", 2);
        }
    }

    internal static async Task<IBlockBackend> OpenBackendAsync(StoreSpec spec, long? sizeBytes)
    {
        try
        {
            return await spec.OpenAsync(new StoreSpecOpenOptions(SizeBytes: sizeBytes));
        }
        catch (StoreException e)
        {
            throw new CliException($"cannot open store {spec.Description}: {e.Message}");
        }
        catch (IOException e)
        {
            throw new CliException($"cannot open store {spec.Description}: {e.Message}");
        }
    }

    private static void PrintStatistics(UblkDevice device, CountingBackend counting)
    {
        Console.Error.WriteLine($"stats: backend {counting.Counts}");
        foreach (var queue in device.GetStatistics())
        {
            var perRequest = queue.Requests == 0 ? 0 : (double)queue.AllocatedBytes / queue.Requests;
            Console.Error.WriteLine(
                $"stats: queue {queue.QueueId} requests={queue.Requests} backend_errors={queue.BackendErrors} " +
                $"thread_allocated_bytes={queue.AllocatedBytes} allocated_bytes_per_request={perRequest.ToString("0.###", CultureInfo.InvariantCulture)}");
        }
    }
}
