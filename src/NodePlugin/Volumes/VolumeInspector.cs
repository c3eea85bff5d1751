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
    /// Grows the volume to at least <paramref name="requiredBytes"/> and its filesystem to the
    /// device's size; returns that size. A device already large enough only has its filesystem grown.
    /// Otherwise, online where the kernel resizes live ublk devices (UBLK_U_CMD_UPDATE_SIZE, 6.16+)
    /// and the store can grow an open volume (file): the volume takes the store's new size, then the
    /// device, then the filesystem. Elsewhere the answer is FAILED_PRECONDITION saying the volume
    /// grows when it is next staged, where the new size is opened and the filesystem grown.
    /// </summary>
    public async Task<long> ExpandAsync(string volumeId, string volumePath, long requiredBytes, CancellationToken cancellationToken)
    {
        var volume = FindAt(volumeId, volumePath);
        var size = volume.Device.SizeBytes;
        if (requiredBytes > size)
        {
            size = await GrowDeviceAsync(volume, requiredBytes, cancellationToken).ConfigureAwait(false);
        }

        if (volume.Record.Access == StagedAccess.Mount && !volume.Record.ReadOnly)
        {
            filesystems.Grow(volume.Device.Path, volume.Record.StagingPath, volume.Record.FsType ?? VolumeStager.DefaultFsType);
            Grown(logger, volumeId, size);
        }

        return size;
    }

    private async Task<long> GrowDeviceAsync(StagedVolume volume, long requiredBytes, CancellationToken cancellationToken)
    {
        var volumeId = volume.Record.VolumeId;
        string reason;
        if (!devices.CanResizeLive)
        {
            reason = "this kernel cannot resize a live ublk device (UBLK_U_CMD_UPDATE_SIZE needs Linux 6.16)";
        }
        else if (await volume.Volume.TryGrowAsync(volume.Record.StoreVolumeId, requiredBytes, cancellationToken).ConfigureAwait(false) is { } grown)
        {
            var previous = volume.Device.SizeBytes;
            await volume.Device.GrowAsync(grown, cancellationToken).ConfigureAwait(false);
            DeviceGrown(logger, volumeId, previous, grown);
            return grown;
        }
        else
        {
            reason = $"the {volume.Record.StoreType} store cannot grow a volume while it is open";
        }

        throw new NodeOperationException(
            StatusCode.FailedPrecondition,
            $"volume {volumeId} is served at {volume.Device.SizeBytes} bytes and {reason}; it grows to {requiredBytes} bytes when it is staged again (restart the pods using it)");
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

    [LoggerMessage(EventId = 231, Level = LogLevel.Information, Message = "grew the live device of volume {VolumeId} from {PreviousBytes} to {SizeBytes} bytes")]
    private static partial void DeviceGrown(ILogger logger, string volumeId, long previousBytes, long sizeBytes);

    [LoggerMessage(EventId = 230, Level = LogLevel.Information, Message = "grew the filesystem of volume {VolumeId} to its device size {SizeBytes}")]
    private static partial void Grown(ILogger logger, string volumeId, long sizeBytes);
}
