using UblkCsi.Engine;
using UblkCsi.Engine.Recovery;

namespace UblkCsi.Cli;

/// <summary>
/// <c>ublk-csi detach ID</c>: stops and deletes a device, also one whose server died. A live
/// server (e.g. <c>ublk-csi attach</c>) sees its device stopped and exits.
/// </summary>
internal static class DetachCommand
{
    public const string Summary = "stop and delete ublk device ID (also when its server died)";

    private const string Usage = "usage: ublk-csi detach ID [--state-dir DIR]";
    private static readonly TimeSpan ReleaseWait = TimeSpan.FromSeconds(10);

    public static async Task<int> RunAsync(string[] args)
    {
        int? id = null;
        var stateDir = UblkDeviceOptions.DefaultRecoveryStateDirectory;
        for (var i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--state-dir": stateDir = CommandOptions.Value(args, ref i); break;
                case "-h" or "--help": Console.Out.WriteLine(Usage); return 0;
                default: id = CommandOptions.DeviceId(args[i], id, Usage); break;
            }
        }

        if (id is not { } deviceId)
        {
            throw new CliException($"the device ID is required\n{Usage}", 2);
        }

        using var control = ControlDevice.Open();
        try
        {
            control.StopDevice(deviceId);
            // Asynchronous delete: a filesystem still mounted on the device must not hang this tool.
            control.DeleteDevice(deviceId, waitForRelease: false);
        }
        catch (UblkException e)
        {
            throw new CliException(e.Message);
        }

        new UblkRecoveryStore(stateDir).Delete(deviceId);
        if (await WaitUntilGoneAsync(control, deviceId))
        {
            Console.Out.WriteLine($"ublk device {deviceId} removed");
        }
        else
        {
            Console.Out.WriteLine($"ublk device {deviceId} stopped; deletion completes when the last user of /dev/ublkb{deviceId} or /dev/ublkc{deviceId} closes it");
        }

        return 0;
    }

    private static async Task<bool> WaitUntilGoneAsync(UblkControl control, int id)
    {
        var deadline = DateTime.UtcNow + ReleaseWait;
        while (DateTime.UtcNow < deadline)
        {
            try
            {
                control.GetDeviceInfo(id);
            }
            catch (UblkException)
            {
                return true;
            }

            await Task.Delay(100);
        }

        return false;
    }
}
