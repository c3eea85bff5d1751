using System.Diagnostics;
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

    private static async Task WaitUntilAsync(Func<bool> condition)
    {
        for (var i = 0; i < 100 && !condition(); i++)
        {
            await Task.Delay(50);
        }

        Assert.True(condition(), "the holder never opened the file");
    }
}
