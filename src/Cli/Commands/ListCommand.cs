using System.Globalization;
using UblkCsi.Engine;
using UblkCsi.Engine.Recovery;

namespace UblkCsi.Cli;

/// <summary><c>ublk-csi list</c>: every ublk device on the host, with the backend from its recovery record.</summary>
internal static class ListCommand
{
    public const string Summary = "list ublk devices (id, state, path, queues, depth, size, backend)";

    private const string Usage = "usage: ublk-csi list [--state-dir DIR]";

    public static Task<int> RunAsync(string[] args)
    {
        var stateDir = UblkDeviceOptions.DefaultRecoveryStateDirectory;
        for (var i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--state-dir": stateDir = CommandOptions.Value(args, ref i); break;
                case "-h" or "--help": Console.Out.WriteLine(Usage); return Task.FromResult(0);
                default: throw new CliException($"unknown option '{args[i]}'\n{Usage}", 2);
            }
        }

        var records = new UblkRecoveryStore(stateDir).ReadAll().ToDictionary(r => r.DeviceId);
        using var control = ControlDevice.Open();
        var devices = control.ListDevices();
        Console.Out.WriteLine($"{"ID",-4} {"STATE",-9} {"PATH",-14} {"QUEUES",6} {"DEPTH",5} {"SIZE",10} BACKEND");
        foreach (var device in devices)
        {
            var size = TrySize(control, device.Id);
            var backend = records.TryGetValue(device.Id, out var record) ? record.Backend ?? "-" : "-";
            Console.Out.WriteLine(
                $"{device.Id,-4} {device.State.ToString().ToLowerInvariant(),-9} {device.BlockDevicePath,-14} {device.Queues,6} {device.Depth,5} {size,10} {backend}");
        }

        return Task.FromResult(0);
    }

    private static string TrySize(UblkControl control, int id)
    {
        try
        {
            return FormatSize(control.GetParameters(id).SizeBytes);
        }
        catch (UblkException)
        {
            return "-";
        }
    }

    internal static string FormatSize(long bytes)
    {
        string[] units = ["B", "K", "M", "G", "T"];
        var unit = 0;
        var value = (double)bytes;
        while (value >= 1024 && unit < units.Length - 1)
        {
            value /= 1024;
            unit++;
        }

        return value.ToString(value % 1 == 0 ? "0" : "0.0", CultureInfo.InvariantCulture) + units[unit];
    }
}
