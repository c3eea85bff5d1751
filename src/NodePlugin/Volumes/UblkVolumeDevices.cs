using UblkCsi.Engine;
using UblkCsi.Engine.Recovery;

namespace UblkCsi.NodePlugin.Volumes;

/// <summary>
/// Devices from the embedded engine. <c>/dev/ublk-control</c> is opened on first use, so a plugin on
/// a host without ublk still starts (Probe then says what is missing) instead of crashing.
/// </summary>
public sealed class UblkVolumeDevices : IVolumeDevices, IDisposable
{
    private const int NoSuchDevice = 19; // ENODEV

    private readonly UblkDeviceOptions _options;
    private readonly UblkRecoveryStore _records;
    private readonly Lock _gate = new();
    private UblkControl? _control;

    /// <summary>Keeps the engine's recovery records in <paramref name="recordDirectory"/>.</summary>
    /// <param name="recordDirectory">Where the engine's per-device recovery records live.</param>
    /// <param name="queues">Queues per device (adopted devices keep the count they were created with).</param>
    /// <param name="zeroCopy">Ask for zero copy (AUTO_BUF_REG) for backends that serve it; adopted devices keep what they were created with.</param>
    public UblkVolumeDevices(string recordDirectory, int queues = 1, bool zeroCopy = true)
    {
        _records = new UblkRecoveryStore(recordDirectory);

        // By default one queue and a modest depth per device: a node serves many mostly idle volumes,
        // and user copy keeps idle devices free of data buffers. More queues buy throughput.
        _options = new UblkDeviceOptions
        {
            Queues = queues,
            Depth = 128,
            EnableRecovery = true,
            RecoveryStateDirectory = _records.Directory,
            AutoBufferRegistration = zeroCopy,
        };
    }

    /// <inheritdoc />
    public bool CanResizeLive => (Control.Features & UblkFeatures.UpdateSize) != 0;

    private UblkControl Control
    {
        get
        {
            lock (_gate)
            {
                return _control ??= UblkControl.Open();
            }
        }
    }

    /// <inheritdoc />
    public async Task<IServedDevice> CreateAsync(IBlockBackend backend, string description, CancellationToken cancellationToken)
    {
        var options = _options with { BackendDescription = description };
        var device = await UblkDevice.CreateAsync(Control, backend, options, cancellationToken).ConfigureAwait(false);
        if (!device.RecoveryEnabled)
        {
            // Without user recovery a plugin restart would fail every pod's I/O: refuse to stage.
            await device.StopAsync().ConfigureAwait(false);
            throw new UblkException("this kernel did not grant USER_RECOVERY|USER_RECOVERY_REISSUE; ublk volumes would not survive a plugin restart");
        }

        return new Served(device);
    }

    /// <inheritdoc />
    public async Task<IServedDevice> AdoptAsync(int id, IBlockBackend backend, string description, CancellationToken cancellationToken) =>
        new Served(await UblkDevice.RecoverAsync(Control, id, backend, _options with { BackendDescription = description }, cancellationToken).ConfigureAwait(false));

    /// <inheritdoc />
    public DeviceCondition Inspect(int id)
    {
        UblkDeviceInfo info;
        try
        {
            info = Control.GetDeviceInfo(id);
        }
        catch (UblkException e) when (e.Errno == NoSuchDevice)
        {
            return DeviceCondition.Absent;
        }

        return info.State switch
        {
            UblkDeviceState.Quiesced => DeviceCondition.Quiesced,
            UblkDeviceState.Live when ServesDevice(info.ServerPid, info.CharDevicePath) => DeviceCondition.LiveWithServer,
            UblkDeviceState.Live => DeviceCondition.LiveServerGone,
            _ => DeviceCondition.Unusable,
        };
    }

    /// <inheritdoc />
    public void ForgetRecord(int id) => _records.Delete(id);

    /// <inheritdoc />
    public IReadOnlyCollection<int> DeviceIdsRecordedThisBoot()
    {
        // The monotonic clock stops while the node is suspended, so this boot time errs late: a record
        // written this boot may count as older, never the reverse.
        var bootedAt = DateTimeOffset.UtcNow - TimeSpan.FromMilliseconds(Environment.TickCount64);
        return _records.ReadAll().Where(r => (r.RecoveredAt ?? r.CreatedAt) > bootedAt).Select(r => r.DeviceId).ToArray();
    }

    /// <inheritdoc />
    public void Delete(int id)
    {
        try
        {
            // On a quiesced device the kernel fails the queued requests, then removes the disk.
            Control.DeleteDevice(id, waitForRelease: false);
        }
        catch (UblkException e) when (e.Errno == NoSuchDevice)
        {
            // Gone already.
        }

        _records.Delete(id);
    }

    /// <summary>
    /// True when process <paramref name="pid"/> holds <paramref name="charDevicePath"/> open, i.e. still
    /// serves the device. The pid alone says nothing: the kernel keeps the number the server gave, from
    /// its own pid namespace, and in a container every plugin process is pid 1, so after a restart the
    /// recorded pid names this very process (which has not opened the device yet) or a stranger.
    /// </summary>
    internal static bool ServesDevice(int pid, string charDevicePath)
    {
        if (pid <= 0 || pid == Environment.ProcessId)
        {
            return false;
        }

        try
        {
            foreach (var fd in Directory.EnumerateFileSystemEntries($"/proc/{pid}/fd"))
            {
                if (TryReadLink(fd) == charDevicePath)
                {
                    return true;
                }
            }

            return false;
        }
        catch (DirectoryNotFoundException)
        {
            return false; // the process is gone
        }
        catch (UnauthorizedAccessException)
        {
            return true; // cannot tell: assume it serves rather than take a device from a live server
        }
    }

    private static string? TryReadLink(string path)
    {
        try
        {
            return File.ResolveLinkTarget(path, returnFinalTarget: false)?.FullName;
        }
        catch (IOException)
        {
            return null; // closed meanwhile
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        lock (_gate)
        {
            _control?.Dispose();
            _control = null;
        }
    }

    private sealed class Served(UblkDevice device) : IServedDevice
    {
        public int Id => device.Id;

        public string Path => device.BlockDevicePath;

        public long SizeBytes => device.Parameters.SizeBytes;

        public Task Completion => device.Completion;

        public bool NodeExists => File.Exists(device.BlockDevicePath);

        public long BackendErrors => device.GetStatistics().Sum(q => q.BackendErrors);

        public Task GrowAsync(long sizeBytes, CancellationToken cancellationToken) => device.GrowAsync(sizeBytes, cancellationToken);

        public Task StopAsync() => device.StopAsync();

        public Task ReleaseAsync() => device.ReleaseAsync();
    }
}
