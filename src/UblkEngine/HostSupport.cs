using UblkCsi.Linux;

namespace UblkCsi.Engine;

/// <summary>What this host lacks for serving ublk devices, if anything.</summary>
/// <param name="ControlDevicePresent">/dev/ublk-control exists (ublk_drv is loaded).</param>
/// <param name="IoUringAvailable">io_uring_setup works for this process.</param>
public readonly record struct HostSupportReport(bool ControlDevicePresent, bool IoUringAvailable)
{
    public bool Ready => ControlDevicePresent && IoUringAvailable;

    /// <summary>One sentence naming what is missing, or null when ready.</summary>
    public string? Problem => (ControlDevicePresent, IoUringAvailable) switch
    {
        (true, true) => null,
        (false, true) => $"{HostSupport.ControlDevicePath} is missing: load the ublk_drv kernel module (modprobe ublk_drv)",
        (true, false) => "io_uring is unavailable (kernel.io_uring_disabled or a seccomp profile forbids io_uring_setup)",
        _ => $"{HostSupport.ControlDevicePath} is missing (load ublk_drv) and io_uring is unavailable",
    };
}

/// <summary>Checks the host's kernel facilities the engine depends on.</summary>
public static class HostSupport
{
    public const string ControlDevicePath = "/dev/ublk-control";

    public static HostSupportReport Probe() => new(File.Exists(ControlDevicePath), IoUringAvailable());

    private static unsafe bool IoUringAvailable()
    {
        var p = stackalloc byte[120];
        new Span<byte>(p, 120).Clear();
        var fd = Libc.Syscall(Libc.SYS_io_uring_setup, 1, (long)p, 0, 0, 0, 0);
        if (fd < 0)
        {
            return false;
        }

        Libc.Close((int)fd);
        return true;
    }
}
