using System.Diagnostics;
using UblkCsi.Engine;
using UblkCsi.Engine.Recovery;
using UblkCsi.NodePlugin.Volumes;

namespace UblkCsi.NodePlugin.Tests;

/// <summary>
/// Whether a live device still has its server is read from the processes' open files, not from the
/// pid the kernel kept: in a container every plugin process is pid 1.
/// </summary>
public sealed class DeviceServerTests
{
    [Fact]
    public async Task AProcessServesADeviceOnlyWhileItHoldsItsCharDeviceOpen()
    {
        var held = Path.Combine(Directory.CreateTempSubdirectory("ublk-serves-").FullName, "ublkc7");
        await File.WriteAllTextAsync(held, string.Empty);
        using var holder = Process.Start(new ProcessStartInfo("/bin/sh", ["-c", "exec 3<\"$0\"; exec sleep 30", held]))!;
        try
        {
            await WaitUntilAsync(() => UblkVolumeDevices.ServesDevice(holder.Id, held));

            Assert.False(UblkVolumeDevices.ServesDevice(holder.Id, held + "0"));
            // The recorded pid is this process's own (a restarted container's pid 1): it has not adopted the device yet.
            Assert.False(UblkVolumeDevices.ServesDevice(Environment.ProcessId, held));
            Assert.False(UblkVolumeDevices.ServesDevice(0, held));
        }
        finally
        {
            holder.Kill();
            await holder.WaitForExitAsync();
        }

        Assert.False(UblkVolumeDevices.ServesDevice(holder.Id, held)); // gone
        Directory.Delete(Path.GetDirectoryName(held)!, recursive: true);
    }

    [Fact]
    public void OnlyEngineRecordsWrittenSinceTheNodeBootedCountAsThisBootsDevices()
    {
        var directory = Directory.CreateTempSubdirectory("ublk-boot-records-").FullName;
        var store = new UblkRecoveryStore(directory);
        var parameters = new UblkDeviceParameters(1 << 20, 512, 4096, 512 << 10, true, true, false, 4096, 1 << 30, 1 << 30);
        var beforeThisBoot = DateTimeOffset.UtcNow - TimeSpan.FromMilliseconds(Environment.TickCount64) - TimeSpan.FromHours(1);
        store.Write(new UblkRecoveryRecord(3, 1, 128, parameters, "csi volume old", beforeThisBoot));
        store.Write(new UblkRecoveryRecord(4, 1, 128, parameters, "csi volume adopted", beforeThisBoot) { RecoveredAt = DateTimeOffset.UtcNow });
        store.Write(new UblkRecoveryRecord(5, 1, 128, parameters, "csi volume new", DateTimeOffset.UtcNow));
        using var devices = new UblkVolumeDevices(directory);

        Assert.Equal([4, 5], devices.DeviceIdsRecordedThisBoot().Order());
        Directory.Delete(directory, recursive: true);
    }

    private static async Task WaitUntilAsync(Func<bool> condition)
    {
        for (var i = 0; i < 100 && !condition(); i++)
        {
            await Task.Delay(50);
        }

        Assert.True(condition(), "the holder never opened the file");
    }
}
