using Grpc.Core;
using Microsoft.Extensions.Logging;
using UblkCsi.NodePlugin.Host;
using UblkCsi.NodePlugin.State;

namespace UblkCsi.NodePlugin.Volumes;

/// <summary>
/// Publishes staged volumes into pods: a bind mount of the staging mount onto a directory, or of the
/// device node onto a file (block); several targets per volume, each read-only on request. Unpublish
/// unmounts and removes what publish created.
/// <para>
/// A read-only block target is a read-only mount of the device node. Linux checks writes through a
/// device node against the device, not the mount, so kubelet enforces it: the container gets the
/// device with cgroup permission "r". The device itself is read-only only when the volume was staged
/// read-only; setting it read-only here would also stop the volume's read-write publications.
/// </para>
/// </summary>
public sealed partial class VolumePublisher(StagedVolumes staged, IMounter mounter, ILogger<VolumePublisher> logger)
{
    /// <summary>Publishes; the same request again succeeds, a conflicting mount at the target is ALREADY_EXISTS.</summary>
    public void Publish(PublishRequest request)
    {
        var volume = staged.Find(request.VolumeId)
            ?? throw new NodeOperationException(StatusCode.FailedPrecondition, $"volume {request.VolumeId} is not staged on this node; call NodeStageVolume first");
        if (volume.Record.StagingPath != request.StagingPath)
        {
            throw new NodeOperationException(StatusCode.FailedPrecondition, $"volume {request.VolumeId} is staged at {volume.Record.StagingPath}, not at {request.StagingPath}");
        }

        if (volume.Record.Access != request.Access)
        {
            throw new NodeOperationException(StatusCode.InvalidArgument, $"volume {request.VolumeId} is staged as {Describe(volume.Record.Access)}; it cannot be published as {Describe(request.Access)}");
        }

        var mounts = mounter.ReadMounts();
        if (request.Access == StagedAccess.Mount && !(MountTable.At(mounts, volume.Record.StagingPath) is { } staging && StagedVolumes.Shows(staging, volume)))
        {
            // Binding a staging directory whose mount is gone would give the pod a directory of the
            // node's own disk: its writes would never reach the volume.
            throw new NodeOperationException(StatusCode.FailedPrecondition, $"volume {request.VolumeId} has no filesystem mounted at its staging path {volume.Record.StagingPath}; call NodeStageVolume again");
        }

        var readOnly = request.ReadOnly || volume.Record.ReadOnly;
        if (MountTable.At(mounts, request.TargetPath) is { } existing)
        {
            if (StagedVolumes.Shows(existing, volume) && existing.ReadOnly == readOnly)
            {
                return;
            }

            throw new NodeOperationException(StatusCode.AlreadyExists, StagedVolumes.Shows(existing, volume)
                ? $"volume {request.VolumeId} is already published at {request.TargetPath} {(existing.ReadOnly ? "read-only" : "read-write")}"
                : $"target path {request.TargetPath} already has a mount of {existing.Source}");
        }

        var created = CreateTarget(request.TargetPath, request.Access);
        try
        {
            var source = request.Access == StagedAccess.Block ? volume.Device.Path : volume.Record.StagingPath;
            mounter.BindMount(source, request.TargetPath, readOnly);
        }
        catch
        {
            if (created)
            {
                RemoveTarget(request.TargetPath);
            }

            throw;
        }

        Published(logger, request.VolumeId, request.TargetPath, readOnly);
    }

    /// <summary>Unmounts the target and removes it; succeeds when there is nothing to undo.</summary>
    public void Unpublish(string volumeId, string targetPath)
    {
        // Whatever is mounted at a volume's target path is that volume's (kubelet owns the path), so
        // it is unmounted even when this process does not serve the volume.
        for (var i = 0; i < 16 && MountTable.At(mounter.ReadMounts(), targetPath) is not null; i++)
        {
            mounter.Unmount(targetPath);
        }

        if (MountTable.At(mounter.ReadMounts(), targetPath) is { } left)
        {
            throw new NodeOperationException(StatusCode.Internal, $"{targetPath} still has a mount of {left.Source} after unmounting");
        }

        RemoveTarget(targetPath);
        Unpublished(logger, volumeId, targetPath);
    }

    private static bool CreateTarget(string path, StagedAccess access)
    {
        if (access == StagedAccess.Mount)
        {
            if (Directory.Exists(path))
            {
                return false;
            }

            Directory.CreateDirectory(path);
            return true;
        }

        if (File.Exists(path))
        {
            return false;
        }

        if (Path.GetDirectoryName(path) is { } parent)
        {
            Directory.CreateDirectory(parent);
        }

        // The device node is bound onto a regular file, as kubelet expects for raw block volumes.
        using (File.Create(path))
        {
        }

        return true;
    }

    private static void RemoveTarget(string path)
    {
        if (Directory.Exists(path))
        {
            try
            {
                Directory.Delete(path, recursive: false);
            }
            catch (IOException e)
            {
                throw new NodeOperationException(StatusCode.Internal, $"cannot remove target path {path} after unmounting: {e.Message}", e);
            }
        }
        else if (File.Exists(path))
        {
            File.Delete(path);
        }
    }

    private static string Describe(StagedAccess access) => access == StagedAccess.Block ? "a block device" : "a filesystem";

    [LoggerMessage(EventId = 220, Level = LogLevel.Information, Message = "published volume {VolumeId} at {TargetPath} (read-only: {ReadOnly})")]
    private static partial void Published(ILogger logger, string volumeId, string targetPath, bool readOnly);

    [LoggerMessage(EventId = 221, Level = LogLevel.Information, Message = "unpublished volume {VolumeId} from {TargetPath}")]
    private static partial void Unpublished(ILogger logger, string volumeId, string targetPath);
}
