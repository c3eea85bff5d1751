using System.Diagnostics;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using UblkCsi.NodePlugin.Host;
using UblkCsi.NodePlugin.State;

namespace UblkCsi.NodePlugin.Volumes;

/// <summary>
/// Stages and unstages volumes: open the store volume, serve it as a ublk device, make a filesystem
/// only on a blank device, mount it at the staging path; and the exact reverse. Also adopts the
/// devices a previous plugin process left (crash, rolling update) and hands them over on shutdown.
/// </summary>
/// <remarks>
/// Callers serialise calls per volume (<see cref="VolumeLocks"/>). Once started, an operation runs to
/// its end or rolls back even when its caller gives up, so a retry finds a settled volume.
/// </remarks>
public sealed partial class VolumeStager
{
    /// <summary>The filesystems NodeStageVolume makes and mounts.</summary>
    public static readonly IReadOnlyList<string> SupportedFsTypes = ["ext4", "xfs"];

    /// <summary>The filesystem made when the capability names none.</summary>
    public const string DefaultFsType = "ext4";

    private readonly StagedVolumes _staged;
    private readonly StagedVolumeStore _records;
    private readonly IVolumeDevices _devices;
    private readonly IVolumeOpener _opener;
    private readonly IMounter _mounter;
    private readonly IFilesystemTools _filesystems;
    private readonly string _bootId;
    private readonly ILogger _logger;
    private readonly Dictionary<string, string> _adoptionFailures = new(StringComparer.Ordinal);

    /// <summary>Creates the stager.</summary>
    public VolumeStager(
        StagedVolumes staged,
        StagedVolumeStore records,
        IVolumeDevices devices,
        IVolumeOpener opener,
        IMounter mounter,
        IFilesystemTools filesystems,
        string bootId,
        ILogger<VolumeStager> logger)
    {
        _staged = staged;
        _records = records;
        _devices = devices;
        _opener = opener;
        _mounter = mounter;
        _filesystems = filesystems;
        _bootId = bootId;
        _logger = logger;
    }

    /// <summary>
    /// Stages a volume. The same request again succeeds (and remounts the staging path if someone
    /// unmounted it); a different one for a staged volume is ALREADY_EXISTS.
    /// </summary>
    public async Task StageAsync(StageRequest request, IReadOnlyDictionary<string, string> secrets)
    {
        var volumeId = request.VolumeId;
        var existing = _staged.Find(volumeId);
        if (existing is null && _records.TryRead(volumeId) is { } orphan)
        {
            // kubelet's secrets, not the saved ones: they may have been rotated since the record was written.
            existing = await RetryAdoptionAsync(orphan, secrets.Count > 0 ? secrets : null).ConfigureAwait(false)
                ?? throw new NodeOperationException(StatusCode.FailedPrecondition, AdoptionFailureMessage(orphan));
        }

        if (existing is not null)
        {
            EnsureSameStage(existing.Record, request);
            if (existing.Record.Access == StagedAccess.Mount && MountTable.At(_mounter.ReadMounts(), request.StagingPath) is null)
            {
                MountFilesystem(existing.Record, existing.Device);
            }

            return;
        }

        if (MountTable.At(_mounter.ReadMounts(), request.StagingPath) is { } occupied)
        {
            throw new NodeOperationException(StatusCode.FailedPrecondition, $"staging path {request.StagingPath} already has a mount of {occupied.Source} that is not volume {volumeId}");
        }

        if (request.Access == StagedAccess.Mount)
        {
            Directory.CreateDirectory(request.StagingPath);
        }

        var started = Stopwatch.GetTimestamp();
        var volume = (await OpenVolumeAsync(request.Context, secrets, request.Handle.StoreId, request.ReadOnly).ConfigureAwait(false)).Instrument(request.Context.Qos);
        IServedDevice? device = null;
        StagedVolumeRecord? record = null;
        try
        {
            device = await _devices.CreateAsync(volume.Backend, $"csi volume {volumeId} in store {request.Context.StoreType}", CancellationToken.None).ConfigureAwait(false);
            record = new StagedVolumeRecord(
                volumeId, request.Context.StoreType, request.Context.StoreParameters, request.Handle.StoreId,
                request.StagingPath, request.Access, request.Access == StagedAccess.Mount ? request.FsType : null,
                request.MountFlags, request.VolumeMountGroup, request.ReadOnly, device.Id, device.SizeBytes, _bootId,
                DateTimeOffset.UtcNow)
            {
                QosParameters = request.Context.Qos.IsUnlimited ? null : request.Context.Qos.ToParameters(),
            };

            // The record is written before the filesystem is touched: from here on a crash leaves a
            // device the next process adopts, never one nobody knows about.
            _records.Write(record, secrets);
            if (request.Access == StagedAccess.Mount)
            {
                MountFilesystem(record, device);
            }

            _staged.Add(new StagedVolume(record, device, volume));
        }
        catch
        {
            await RollBackAsync(request, volume, device, record).ConfigureAwait(false);
            throw;
        }

        Staged(_logger, volumeId, device.Path, request.Access, request.StagingPath, Stopwatch.GetElapsedTime(started).TotalMilliseconds);
    }

    /// <summary>
    /// Unstages a volume: unmounts the staging path, deletes the device (the kernel drains it first),
    /// makes every write durable, closes the volume and removes its record. Unknown volumes succeed.
    /// </summary>
    public async Task UnstageAsync(string volumeId, string stagingPath)
    {
        var staged = _staged.Find(volumeId);
        if (staged is null)
        {
            if (_records.TryRead(volumeId) is not { } orphan)
            {
                return;
            }

            staged = await RetryAdoptionAsync(orphan).ConfigureAwait(false)
                ?? throw new NodeOperationException(StatusCode.FailedPrecondition, AdoptionFailureMessage(orphan));
        }

        if (staged.Record.StagingPath != stagingPath)
        {
            throw new NodeOperationException(StatusCode.FailedPrecondition, $"volume {volumeId} is staged at {staged.Record.StagingPath}, not at {stagingPath}");
        }

        var mounts = _mounter.ReadMounts();
        var published = mounts.Where(m => m.MountPoint != stagingPath && StagedVolumes.Shows(m, staged)).Select(m => m.MountPoint).Distinct().ToArray();
        if (published.Length > 0)
        {
            throw new NodeOperationException(StatusCode.FailedPrecondition, $"volume {volumeId} is still published at {string.Join(", ", published)}; call NodeUnpublishVolume first");
        }

        UnmountAll(stagingPath, m => StagedVolumes.Shows(m, staged));
        // Durable while the device still exists: a store that cannot flush fails the call with the
        // device and its record intact, so kubelet's retry starts from the same state. Once deleted,
        // the device's id is free for the next volume staged here, and a record still naming it
        // would send the adoption after a restart to that other volume's device.
        await staged.Volume.Backend.FlushAsync().ConfigureAwait(false);
        try
        {
            await staged.Device.StopAsync().ConfigureAwait(false);
        }
        catch (Exception e) when (_devices.Inspect(staged.Device.Id) == DeviceCondition.Absent)
        {
            // The engine deleted the device although the kernel's stop failed: its id is free, so the
            // records naming it go now (below), or a restart would adopt whatever device takes the id.
            StopFailedButDeleted(_logger, volumeId, staged.Device.Path, e.Message);
        }

        await CloseVolumeAsync(staged.Volume, volumeId).ConfigureAwait(false);
        _devices.ForgetRecord(staged.Device.Id);
        _records.Delete(volumeId);
        _staged.Remove(volumeId);
        Unstaged(_logger, volumeId, staged.Device.Path);
    }

    /// <summary>
    /// Adopts every device listed in the state directory, before the plugin reports ready: a device
    /// whose server died (kill -9) or handed it over (SIGTERM) is served again with no I/O error. A
    /// record of another boot, or whose device is gone, is removed so the next stage starts afresh.
    /// </summary>
    public async Task AdoptAllAsync(CancellationToken cancellationToken)
    {
        var records = _records.ReadAll((file, problem) => RecordUnreadable(_logger, file, problem));
        // The kernel gives a deleted device's id to the next device, so when two records of this boot
        // name one id, the one staged last owns the device; the other outlived its device.
        var owners = records.Where(r => r.BootId == _bootId).GroupBy(r => r.DeviceId)
            .ToDictionary(g => g.Key, g => g.MaxBy(r => r.StagedAt)!.VolumeId);
        foreach (var record in records)
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (record.BootId != _bootId)
            {
                Forget(record, "it belongs to an earlier boot of this node", forgetDeviceRecord: !owners.ContainsKey(record.DeviceId));
                continue;
            }

            if (owners[record.DeviceId] != record.VolumeId)
            {
                Forget(record, $"its device was deleted and {record.DevicePath} now serves volume {owners[record.DeviceId]}", forgetDeviceRecord: false);
                continue;
            }

            var condition = _devices.Inspect(record.DeviceId);
            switch (condition)
            {
                case DeviceCondition.Absent:
                    Forget(record, $"its device {record.DevicePath} no longer exists", forgetDeviceRecord: true);
                    break;
                case DeviceCondition.Quiesced or DeviceCondition.LiveServerGone:
                    await AdoptAsync(record, secrets: null, cancellationToken).ConfigureAwait(false);
                    break;
                case DeviceCondition.LiveWithServer:
                    FailAdoption(record, $"{record.DevicePath} is served by another live process (is a second node plugin running?)");
                    break;
                default:
                    FailAdoption(record, $"{record.DevicePath} is stopped or failing I/O and cannot be adopted");
                    break;
            }
        }

        DeleteUnrecordedDevices(owners);
    }

    /// <summary>
    /// A device the engine recorded but no volume record names was created by a stage that died before
    /// it wrote its record. Nothing is mounted on it (mounting comes after the record) and no call can
    /// name it, so it is deleted instead of waiting, quiesced, forever; an engine record whose device
    /// is gone is dropped.
    /// </summary>
    private void DeleteUnrecordedDevices(Dictionary<int, string> ownersOfThisBoot)
    {
        foreach (var id in _devices.DeviceIdsRecordedThisBoot().Where(id => !ownersOfThisBoot.ContainsKey(id)))
        {
            switch (_devices.Inspect(id))
            {
                case DeviceCondition.Absent:
                    _devices.ForgetRecord(id);
                    break;
                case DeviceCondition.Quiesced:
                    // Only a quiesced device surely has no server; a live one is left alone.
                    _devices.Delete(id);
                    UnrecordedDeviceDeleted(_logger, $"/dev/ublkb{id}");
                    break;
            }
        }
    }

    /// <summary>
    /// Planned handover (SIGTERM, rolling update): stop serving every device but leave it quiesced,
    /// its filesystem mounted, for the next plugin process; completed writes are made durable first.
    /// </summary>
    /// <remarks>
    /// A call that outlived the gRPC server's grace period (an unstage flushing to a slow store, say)
    /// still holds its volume's lock; the handover waits for it rather than release a device that
    /// call is about to delete, and keeps the lock, so nothing changes the volume afterwards. If the
    /// wait outlasts the pod's termination grace, SIGKILL ends it: the kill -9 case, which the next
    /// process recovers from.
    /// </remarks>
    public async Task HandOverAllAsync(VolumeLocks locks)
    {
        var heldUntilExit = new List<IDisposable>();
        foreach (var volumeId in _staged.All.Select(v => v.Record.VolumeId))
        {
            heldUntilExit.Add(await locks.AcquireAsync(volumeId).ConfigureAwait(false));
            if (_staged.Find(volumeId) is not { } staged)
            {
                continue; // unstaged by the call that held the lock
            }

            try
            {
                await staged.Device.ReleaseAsync().ConfigureAwait(false);
                _records.Write(staged.Record with { ReleasedAt = DateTimeOffset.UtcNow }, _records.ReadSecrets(volumeId));
                await CloseVolumeAsync(staged.Volume, volumeId).ConfigureAwait(false);
                _staged.Remove(volumeId);
                HandedOver(_logger, volumeId, staged.Device.Path);
            }
            catch (Exception e)
            {
                HandOverFailed(_logger, volumeId, staged.Device.Path, e.Message, e);
            }
        }
    }

    private async Task AdoptAsync(StagedVolumeRecord record, IReadOnlyDictionary<string, string>? secrets, CancellationToken cancellationToken)
    {
        var started = Stopwatch.GetTimestamp();
        OpenedVolume? volume = null;
        IServedDevice? device = null;
        try
        {
            var context = new VolumeContext(record.StoreType, record.StoreParameters);
            secrets ??= _records.ReadSecrets(record.VolumeId);
            volume = (await OpenVolumeAsync(context, secrets, record.StoreVolumeId, record.ReadOnly).ConfigureAwait(false))
                .Instrument(Engine.Backends.Qos.QosLimits.Parse(record.QosParameters ?? new Dictionary<string, string>()));
            device = await _devices.AdoptAsync(record.DeviceId, volume.Backend, $"csi volume {record.VolumeId} in store {record.StoreType}", cancellationToken).ConfigureAwait(false);

            // Without a server since the handover, or (after a crash, time unknown) at least since
            // this process started.
            var adopted = DateTimeOffset.UtcNow;
            var since = record.ReleasedAt ?? new DateTimeOffset(Process.GetCurrentProcess().StartTime.ToUniversalTime());
            var updated = record with { Recoveries = record.Recoveries + 1, LastAdoptionGapSeconds = (adopted - since).TotalSeconds, ReleasedAt = null };
            _records.Write(updated, secrets);
            _staged.Add(new StagedVolume(updated, device, volume));
            Adopted(_logger, record.VolumeId, device.Path, Stopwatch.GetElapsedTime(started).TotalMilliseconds);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            if (device is not null)
            {
                // Adopted, but its record could not be updated: quiesce it again rather than leave it
                // served by a backend closed below; kubelet's next call for the volume adopts it anew.
                await device.ReleaseAsync().ConfigureAwait(false);
            }

            if (volume is not null)
            {
                await volume.DisposeAsync().ConfigureAwait(false);
            }

            FailAdoption(record, e.Message);
        }
    }

    /// <summary>
    /// A record whose adoption failed when this process started (its store unreachable for a moment,
    /// say) is tried once more whenever kubelet calls for its volume, so kubelet's retries heal it
    /// instead of failing until the plugin restarts. Only a device still waiting for a server is
    /// adopted. Returns the staged volume, or null when it still cannot be adopted.
    /// </summary>
    private async Task<StagedVolume?> RetryAdoptionAsync(StagedVolumeRecord orphan, IReadOnlyDictionary<string, string>? secrets = null)
    {
        if (orphan.BootId == _bootId && _devices.Inspect(orphan.DeviceId) is DeviceCondition.Quiesced or DeviceCondition.LiveServerGone)
        {
            await AdoptAsync(orphan, secrets, CancellationToken.None).ConfigureAwait(false);
        }

        return _staged.Find(orphan.VolumeId);
    }

    private void FailAdoption(StagedVolumeRecord record, string reason)
    {
        lock (_adoptionFailures)
        {
            _adoptionFailures[record.VolumeId] = reason;
        }

        AdoptionFailed(_logger, record.VolumeId, record.DevicePath, reason);
    }

    private string AdoptionFailureMessage(StagedVolumeRecord record)
    {
        string? reason;
        lock (_adoptionFailures)
        {
            _adoptionFailures.TryGetValue(record.VolumeId, out reason);
        }

        return $"volume {record.VolumeId} was staged by an earlier plugin process on {record.DevicePath} and could not be adopted"
            + (reason is null ? string.Empty : $": {reason}")
            + $"; inspect it with 'ublk-csi list', and remove the record {StagedVolumeStore.KeyOf(record.VolumeId)}.json in {_records.Directory} once the device is gone";
    }

    private void Forget(StagedVolumeRecord record, string reason, bool forgetDeviceRecord)
    {
        _records.Delete(record.VolumeId);
        if (forgetDeviceRecord)
        {
            _devices.ForgetRecord(record.DeviceId);
        }

        RecordForgotten(_logger, record.VolumeId, record.DevicePath, reason);
    }

    private static void EnsureSameStage(StagedVolumeRecord staged, StageRequest request)
    {
        string? difference = null;
        if (staged.StagingPath != request.StagingPath)
        {
            difference = $"staging path {staged.StagingPath}";
        }
        else if (staged.Access != request.Access)
        {
            difference = $"access type {staged.Access.ToString().ToLowerInvariant()}";
        }
        else if (staged.Access == StagedAccess.Mount && staged.FsType != request.FsType)
        {
            difference = $"filesystem {staged.FsType}";
        }
        else if (staged.Access == StagedAccess.Mount && !staged.MountFlags.SequenceEqual(request.MountFlags))
        {
            difference = $"mount flags [{string.Join(",", staged.MountFlags)}]";
        }
        else if (staged.Access == StagedAccess.Mount && staged.VolumeMountGroup != request.VolumeMountGroup)
        {
            difference = staged.VolumeMountGroup is null ? "no volume mount group" : $"volume mount group {staged.VolumeMountGroup}";
        }
        else if (staged.ReadOnly != request.ReadOnly)
        {
            difference = staged.ReadOnly ? "a read-only access mode" : "a read-write access mode";
        }
        else if (!new VolumeContext(staged.StoreType, staged.StoreParameters).SameStoreAs(request.Context))
        {
            difference = "another volume_context";
        }

        if (difference is not null)
        {
            throw new NodeOperationException(StatusCode.AlreadyExists, $"volume {staged.VolumeId} is already staged with {difference}");
        }
    }

    private void MountFilesystem(StagedVolumeRecord record, IServedDevice device)
    {
        var fsType = record.FsType ?? DefaultFsType;
        var errorsBefore = device.BackendErrors;
        var found = _filesystems.Probe(device.Path);
        if (found is null)
        {
            // blkid reports a device it could not read as it reports a blank one (exit 2), so a probe
            // during which the store failed a request says nothing: formatting then could destroy a
            // filesystem the store just failed to return. Only a probe served without error may lead to mkfs.
            if (device.BackendErrors != errorsBefore)
            {
                throw new NodeOperationException(StatusCode.Unavailable, $"volume {record.VolumeId}: the store failed reads while {device.Path} was probed for a filesystem; it is not formatted (see the volume's condition, then retry)");
            }

            if (record.ReadOnly)
            {
                throw new NodeOperationException(StatusCode.FailedPrecondition, $"volume {record.VolumeId} is blank and its access mode is read-only: there is no filesystem to mount and none can be made");
            }

            _filesystems.Format(device.Path, fsType);
            Formatted(_logger, record.VolumeId, device.Path, fsType);
        }
        else if (found != fsType)
        {
            throw new NodeOperationException(StatusCode.FailedPrecondition, $"volume {record.VolumeId} holds {found}, not {fsType}; it is never reformatted (use fsType {found} or a new volume)");
        }

        Directory.CreateDirectory(record.StagingPath);
        var options = new List<string>(record.MountFlags);
        if (record.ReadOnly)
        {
            options.Add("ro");
        }

        if (fsType == "xfs" && !options.Contains("nouuid"))
        {
            // Clones and restored snapshots carry their source's UUID; xfs refuses a second mount of one.
            options.Add("nouuid");
        }

        _mounter.Mount(device.Path, record.StagingPath, fsType, options);
        try
        {
            if (found is not null && !record.ReadOnly)
            {
                // The volume may have grown since its filesystem was made (expansion on this kernel
                // takes effect here, when the volume is staged again).
                _filesystems.Grow(device.Path, record.StagingPath, fsType);
            }

            if (record.VolumeMountGroup is { } group && !record.ReadOnly)
            {
                _filesystems.ApplyGroup(record.StagingPath, group);
            }
        }
        catch
        {
            _mounter.Unmount(record.StagingPath);
            throw;
        }
    }

    private async Task RollBackAsync(StageRequest request, OpenedVolume volume, IServedDevice? device, StagedVolumeRecord? record)
    {
        try
        {
            if (device is not null)
            {
                UnmountAll(request.StagingPath, m => m.Source == device.Path);
                await device.StopAsync().ConfigureAwait(false);
                _devices.ForgetRecord(device.Id);
            }

            await volume.DisposeAsync().ConfigureAwait(false);
            if (record is not null)
            {
                _records.Delete(record.VolumeId);
            }
        }
        catch (Exception e)
        {
            RollBackFailed(_logger, request.VolumeId, e.Message, e);
        }
    }

    private void UnmountAll(string path, Func<MountEntry, bool> ours)
    {
        // Mounts can stack; undo every one of this volume at the path.
        for (var i = 0; i < 16 && MountTable.At(_mounter.ReadMounts(), path) is { } mount && ours(mount); i++)
        {
            _mounter.Unmount(path);
        }
    }

    private async Task<OpenedVolume> OpenVolumeAsync(VolumeContext context, IReadOnlyDictionary<string, string> secrets, string storeVolumeId, bool readOnly)
    {
        try
        {
            return await _opener.OpenAsync(context, secrets, storeVolumeId, readOnly, CancellationToken.None).ConfigureAwait(false);
        }
        catch (Stores.StoreException e)
        {
            throw new NodeOperationException(Stores.StoreStatusCodes.ToStatusCode(e.Code), $"cannot open volume {storeVolumeId} of the {context.StoreType} store: {e.Message}", e);
        }
    }

    private async Task CloseVolumeAsync(OpenedVolume volume, string volumeId)
    {
        try
        {
            await volume.Backend.FlushAsync().ConfigureAwait(false);
        }
        finally
        {
            await volume.DisposeAsync().ConfigureAwait(false);
        }

        Closed(_logger, volumeId);
    }

    [LoggerMessage(EventId = 200, Level = LogLevel.Information, Message = "staged volume {VolumeId} on {Device} ({Access}) at {StagingPath} in {Milliseconds:F0} ms")]
    private static partial void Staged(ILogger logger, string volumeId, string device, StagedAccess access, string stagingPath, double milliseconds);

    [LoggerMessage(EventId = 201, Level = LogLevel.Information, Message = "made {FsType} on {Device} for volume {VolumeId} (it was blank)")]
    private static partial void Formatted(ILogger logger, string volumeId, string device, string fsType);

    [LoggerMessage(EventId = 202, Level = LogLevel.Information, Message = "unstaged volume {VolumeId}: {Device} deleted")]
    private static partial void Unstaged(ILogger logger, string volumeId, string device);

    [LoggerMessage(EventId = 203, Level = LogLevel.Debug, Message = "volume {VolumeId} flushed and closed")]
    private static partial void Closed(ILogger logger, string volumeId);

    [LoggerMessage(EventId = 204, Level = LogLevel.Information, Message = "adopted volume {VolumeId} on {Device} in {Milliseconds:F0} ms")]
    private static partial void Adopted(ILogger logger, string volumeId, string device, double milliseconds);

    [LoggerMessage(EventId = 205, Level = LogLevel.Error, Message = "cannot adopt volume {VolumeId} on {Device}: {Reason}")]
    private static partial void AdoptionFailed(ILogger logger, string volumeId, string device, string reason);

    [LoggerMessage(EventId = 206, Level = LogLevel.Information, Message = "removed the record of volume {VolumeId} ({Device}): {Reason}")]
    private static partial void RecordForgotten(ILogger logger, string volumeId, string device, string reason);

    [LoggerMessage(EventId = 207, Level = LogLevel.Information, Message = "handed volume {VolumeId} on {Device} over to the next plugin process")]
    private static partial void HandedOver(ILogger logger, string volumeId, string device);

    [LoggerMessage(EventId = 208, Level = LogLevel.Error, Message = "cannot hand volume {VolumeId} on {Device} over: {Reason}")]
    private static partial void HandOverFailed(ILogger logger, string volumeId, string device, string reason, Exception exception);

    [LoggerMessage(EventId = 209, Level = LogLevel.Error, Message = "rolling back the stage of volume {VolumeId} failed: {Reason}")]
    private static partial void RollBackFailed(ILogger logger, string volumeId, string reason, Exception exception);

    [LoggerMessage(EventId = 210, Level = LogLevel.Warning, Message = "skipping unreadable volume record {File}: {Problem}")]
    private static partial void RecordUnreadable(ILogger logger, string file, string problem);

    [LoggerMessage(EventId = 211, Level = LogLevel.Warning, Message = "deleted {Device}: a stage created it and ended before it recorded the volume")]
    private static partial void UnrecordedDeviceDeleted(ILogger logger, string device);

    [LoggerMessage(EventId = 212, Level = LogLevel.Warning, Message = "unstaging volume {VolumeId}: stopping {Device} failed ({Reason}), but the device is deleted")]
    private static partial void StopFailedButDeleted(ILogger logger, string volumeId, string device, string reason);
}
