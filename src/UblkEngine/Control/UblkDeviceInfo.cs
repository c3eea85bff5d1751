using UblkCsi.Engine.Abi;

namespace UblkCsi.Engine;

/// <summary>What the kernel reports about a ublk device (GET_DEV_INFO).</summary>
public sealed record UblkDeviceInfo(
    int Id,
    int Queues,
    int Depth,
    UblkDeviceState State,
    int MaxIoBytes,
    int ServerPid,
    UblkFeatures Flags,
    uint OwnerUid,
    uint OwnerGid)
{
    /// <summary>/dev/ublkbN: the block device (exists while the device is started).</summary>
    public string BlockDevicePath => UblkAbi.BlockDevicePrefix + Id;

    /// <summary>/dev/ublkcN: the server's char device.</summary>
    public string CharDevicePath => UblkAbi.CharDevicePrefix + Id;

    internal static UblkDeviceInfo FromKernel(in UblksrvCtrlDevInfo info) => new(
        (int)info.DevId,
        info.NrHwQueues,
        info.QueueDepth,
        (UblkDeviceState)info.State,
        (int)info.MaxIoBufBytes,
        info.UblksrvPid,
        (UblkFeatures)info.Flags,
        info.OwnerUid,
        info.OwnerGid);
}
