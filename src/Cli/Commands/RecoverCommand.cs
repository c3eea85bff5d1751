using UblkCsi.Engine;
using UblkCsi.Engine.Recovery;

namespace UblkCsi.Cli;

/// <summary>
/// <c>ublk-csi recover ID</c>: adopts a device whose server died (QUIESCED), reopening the backend
/// named in its recovery record, and serves it like attach. memory and null stores cannot be
/// reopened with their content: a recovered memory device starts empty.
/// </summary>
internal static class RecoverCommand
{
    public const string Summary = "adopt ublk device ID whose server died and serve it like attach";

    private const string Usage = "usage: ublk-csi recover ID [--state-dir DIR] [--store SPEC] [--keep-on-exit] [--stats]";

    public static async Task<int> RunAsync(string[] args)
    {
        int? id = null;
        string? storeOverride = null;
        var stateDir = UblkDeviceOptions.DefaultRecoveryStateDirectory;
        var stats = false;
        var keepOnExit = false;
        for (var i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--state-dir": stateDir = CommandOptions.Value(args, ref i); break;
                case "--store": storeOverride = CommandOptions.Value(args, ref i); break;
                case "--stats": stats = true; break;
                case "--keep-on-exit": keepOnExit = true; break;
                case "-h" or "--help": Console.Out.WriteLine(Usage); return 0;
                default: id = CommandOptions.DeviceId(args[i], id, Usage); break;
            }
        }

        if (id is not { } deviceId)
        {
            throw new CliException($"the device ID is required\n{Usage}", 2);
        }

        var store = new UblkRecoveryStore(stateDir);
        UblkRecoveryRecord? record;
        try
        {
            record = store.TryRead(deviceId);
        }
        catch (UblkException e)
        {
            throw new CliException(e.Message);
        }

        if (record == null)
        {
            throw new CliException($"no recovery record for ublk device {deviceId} in {store.Directory} (use --state-dir, or --store to name the backend)");
        }

        var description = storeOverride ?? record.Backend
            ?? throw new CliException($"the recovery record of ublk device {deviceId} names no backend; pass --store SPEC");
        var spec = AttachCommand.ParseSpec(description);
        var options = new UblkDeviceOptions
        {
            RecoveryStateDirectory = stateDir,
            BackendDescription = spec.Description,
        };
        await using var storeEvents = new StoreEventLog();
        await using var backend = await AttachCommand.OpenBackendAsync(spec, record.Parameters.SizeBytes);
        return await AttachCommand.ServeAsync(options, backend, stats, keepOnExit, (control, served) => UblkDevice.RecoverAsync(control, deviceId, served, options));
    }
}
