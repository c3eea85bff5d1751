namespace UblkCsi.Engine.Device;

/// <summary>
/// The size a device serves, shared by its queues: requests past it fail with EIO. It only grows,
/// while the device is live (UBLK_U_CMD_UPDATE_SIZE), and before the kernel is told, so the queues
/// accept the new range by the time the kernel sends it.
/// </summary>
internal sealed class DeviceCapacity(long bytes)
{
    private long _bytes = bytes;

    public long Bytes => Volatile.Read(ref _bytes);

    public void GrowTo(long bytes) => Volatile.Write(ref _bytes, Math.Max(bytes, Bytes));
}
