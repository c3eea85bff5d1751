using Grpc.Core;
using Microsoft.Extensions.Logging;
using UblkCsi.NodePlugin.Host;
using UblkCsi.NodePlugin.State;

namespace UblkCsi.NodePlugin.Volumes;

/// <summary>NodeGetVolumeStats and NodeExpandVolume for staged volumes.</summary>
public sealed partial class VolumeInspector(StagedVolumes staged, IVolumeDevices devices, IMounter mounter, IFilesystemTools filesystems, ILogger<VolumeInspector> logger)
{
    /// <summary>Usage and condition of a volume at one of its paths (staging or target).</summary>
    public VolumeStatistics GetStatistics(string volumeId, string volumePath)
    {
        var volume = FindAt(volumeId, volumePath);
        var problem = volume.CheckHealth();
        if (volume.Record.Access == StagedAccess.Block)
        {
            return new VolumeStatistics(volume.Device.SizeBytes, null, null, null, null, null, problem);
        }

        var s = NativeMethods.GetFilesystemStatistics(volumePath);
        var unit = (long)s.FragmentSize;
        var total = (long)s.Blocks * unit;
        return new VolumeStatistics(
            total,
            (long)s.BlocksAvailable * unit,
            total - ((long)s.BlocksFree * unit),
            (long)s.Files,
            (long)s.FilesFree,
            (long)(s.Files - s.FilesFree),
            problem);
    }

    /// <summary>
    /// Grows the filesystem to the device's size and returns that size. A device smaller than
    /// <paramref name="requiredBytes"/> cannot grow while live on kernels without
    /// UBLK_U_CMD_UPDATE_SIZE (6.16+): the answer is FAILED_PRECONDITION saying the volume grows when
    /// it is next staged, where the new size is opened and the filesystem grown.
    /// </summary>
    public long Expand(string volumeId, string volumePath, long requiredBytes)
    {
        var volume = FindAt(volumeId, volumePath);
        var size = volume.Device.SizeBytes;
        if (requiredBytes > size)
        {
            var kernel = devices.CanResizeLive
                ? "this kernel offers UBLK_U_CMD_UPDATE_SIZE, which this plugin version does not use yet"
                : "this kernel cannot resize a live ublk device (UBLK_U_CMD_UPDATE_SIZE needs Linux 6.16)";
            throw new NodeOperationException(
                StatusCode.FailedPrecondition,
                $"volume {volumeId} is served at {size} bytes and {kernel}; it grows to {requiredBytes} bytes when it is staged again (restart the pods using it)");
        }

        if (volume.Record.Access == StagedAccess.Mount && !volume.Record.ReadOnly)
        {
            filesystems.Grow(volume.Device.Path, volume.Record.StagingPath, volume.Record.FsType ?? VolumeStager.DefaultFsType);
            Grown(logger, volumeId, size);
        }

        return size;
    }

    private StagedVolume FindAt(string volumeId, string volumePath)
    {
        var volume = staged.Find(volumeId)
            ?? throw new NodeOperationException(StatusCode.NotFound, $"volume {volumeId} is not staged on this node");
        if (MountTable.At(mounter.ReadMounts(), volumePath) is not { } mount || !StagedVolumes.Shows(mount, volume))
        {
            throw new NodeOperationException(StatusCode.NotFound, $"volume {volumeId} is not mounted at {volumePath}");
        }

        return volume;
    }

    [LoggerMessage(EventId = 230, Level = LogLevel.Information, Message = "grew the filesystem of volume {VolumeId} to its device size {SizeBytes}")]
    private static partial void Grown(ILogger logger, string volumeId, long sizeBytes);
}
