using UblkCsi.Engine;

namespace UblkCsi.NodePlugin.Volumes;

/// <summary>A ublk device this process serves for a staged volume.</summary>
public interface IServedDevice
{
    /// <summary>N of /dev/ublkbN.</summary>
    int Id { get; }

    /// <summary>/dev/ublkbN.</summary>
    string Path { get; }

    /// <summary>The device size in bytes.</summary>
    long SizeBytes { get; }

    /// <summary>Completes (or faults) when the device stops being served.</summary>
    Task Completion { get; }

    /// <summary>/dev/ublkbN is present.</summary>
    bool NodeExists { get; }

    /// <summary>Requests the store failed since the device was created or adopted.</summary>
    long BackendErrors { get; }

    /// <summary>Grows the live device (UPDATE_SIZE, needs <see cref="IVolumeDevices.CanResizeLive"/>) after its backend grew.</summary>
    Task GrowAsync(long sizeBytes, CancellationToken cancellationToken);

    /// <summary>Stops and deletes the device (after its filesystem is unmounted).</summary>
    Task StopAsync();

    /// <summary>Stops serving and leaves the device quiesced for the next plugin process.</summary>
    Task ReleaseAsync();
}

/// <summary>What the kernel says about a device a record names.</summary>
public enum DeviceCondition
{
    /// <summary>No such device: the node rebooted or someone deleted it.</summary>
    Absent,

    /// <summary>Waiting for a server (its previous one died or handed it over): adoptable.</summary>
    Quiesced,

    /// <summary>Served by a live process (one that holds its /dev/ublkcN open).</summary>
    LiveWithServer,

    /// <summary>Marked live, but its server process is gone (about to be quiesced): adoptable.</summary>
    LiveServerGone,

    /// <summary>Stopped or failing I/O: not adoptable.</summary>
    Unusable,
}

/// <summary>Creates and adopts ublk devices; the engine in production, a fake in tests.</summary>
public interface IVolumeDevices
{
    /// <summary>True when the kernel can resize a live device (UBLK_U_CMD_UPDATE_SIZE, 6.16+).</summary>
    bool CanResizeLive { get; }

    /// <summary>Creates a device (with user recovery) serving <paramref name="backend"/>.</summary>
    Task<IServedDevice> CreateAsync(IBlockBackend backend, string description, CancellationToken cancellationToken);

    /// <summary>Adopts device <paramref name="id"/>, which a dead or departed plugin process served.</summary>
    Task<IServedDevice> AdoptAsync(int id, IBlockBackend backend, string description, CancellationToken cancellationToken);

    /// <summary>The kernel's view of device <paramref name="id"/>.</summary>
    DeviceCondition Inspect(int id);

    /// <summary>Forgets the engine's recovery record of a device that no longer exists.</summary>
    void ForgetRecord(int id);

    /// <summary>
    /// The ids of the devices the engine recorded (created or adopted, not deleted since) during this
    /// boot of the node; a record of an earlier boot names an id that may now be another server's device.
    /// </summary>
    IReadOnlyCollection<int> DeviceIdsRecordedThisBoot();

    /// <summary>Deletes device <paramref name="id"/>, which no process serves (queued I/O fails), and forgets its record.</summary>
    void Delete(int id);
}
