using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using UblkCsi.Engine.Abi;
using UblkCsi.Engine.Buffers;
using UblkCsi.Engine.Device;
using UblkCsi.Engine.Interop;
using UblkCsi.Engine.Logging;
using UblkCsi.Engine.Recovery;
using UblkCsi.Engine.Threading;
using UblkCsi.Linux;

namespace UblkCsi.Engine;

/// <summary>
/// A ublk block device served by this process from an <see cref="IBlockBackend"/>. Create one with
/// <see cref="CreateAsync"/> (new device) or <see cref="RecoverAsync"/> (adopt a device whose server
/// died). <see cref="StopAsync"/> / <see cref="DisposeAsync"/> remove it; <see cref="ReleaseAsync"/>
/// leaves it to be adopted by another process. The backend stays owned by the caller.
/// </summary>
public sealed class UblkDevice : IAsyncDisposable
{
    private const int CharDeviceOpenAttempts = 50;
    private static readonly TimeSpan RetryInterval = TimeSpan.FromMilliseconds(100);

    private readonly UblkControl _control;
    private readonly UblkDeviceOptions _options;
    private readonly FileDescriptorHandle _charDevice;
    private readonly UblkQueue[] _queues;
    private readonly UblkRecoveryStore? _recoveryStore;
    private readonly Task _allQueuesExited;
    private readonly Task _completion;
    private readonly Lock _lifecycleGate = new();
    private readonly DeviceCapacity _capacity;
    private Task? _shutdown;

    private UblkDevice(
        UblkControl control,
        UblkDeviceInfo info,
        UblkDeviceParameters parameters,
        IBlockBackend backend,
        UblkDeviceOptions options,
        FileDescriptorHandle charDevice)
    {
        _control = control;
        _options = options;
        _charDevice = charDevice;
        Info = info;
        Parameters = parameters;
        Backend = backend;
        _recoveryStore = options.RecoveryStateDirectory is { } dir && (info.Flags & UblkFeatures.UserRecovery) != 0
            ? new UblkRecoveryStore(dir)
            : null;

        var userCopy = (info.Flags & UblkFeatures.UserCopy) != 0;
        var autoBufReg = UsesAutoBufferRegistration(info.Flags);
        var ioctlEncoded = (info.Flags & UblkFeatures.CmdIoctlEncode) != 0;
        var pool = options.BufferPool ?? IoBufferPool.Shared;
        var logger = options.Logger ?? NullLogger.Instance;
        var failures = new DeviceFailureLog(info.Id, logger);
        _capacity = new DeviceCapacity(parameters.SizeBytes);
        _queues = new UblkQueue[info.Queues];
        try
        {
            for (var q = 0; q < _queues.Length; q++)
            {
                _queues[q] = new UblkQueue(new QueueSetup(
                    info.Id, q, info.Depth, Math.Min(info.MaxIoBytes, parameters.MaxIoBytes), _capacity,
                    userCopy, autoBufReg, ioctlEncoded, charDevice, backend, pool, QueueAffinity(control, info.Id, q, logger), logger, failures));
            }
        }
        catch
        {
            // Out of descriptors, say: nothing of this device may stay open (an open char device
            // would also keep the next adoption of the device waiting for this process).
            foreach (var queue in _queues)
            {
                queue?.DisposeUnstarted();
            }

            charDevice.Dispose();
            throw;
        }

        _allQueuesExited = Task.WhenAll(_queues.Select(q => q.Exited));
        _completion = WatchQueuesAsync();
    }

    /// <summary>Kernel id N of /dev/ublkbN.</summary>
    public int Id => Info.Id;

    /// <summary>/dev/ublkbN.</summary>
    public string BlockDevicePath => Info.BlockDevicePath;

    /// <summary>Queues, depth and the feature flags the kernel granted (read back after ADD_DEV).</summary>
    public UblkDeviceInfo Info { get; }

    /// <summary>The parameters the device was started with; <see cref="GrowAsync"/> changes the size.</summary>
    public UblkDeviceParameters Parameters { get; private set; }

    /// <summary>True when the kernel can resize this device while it is live (<see cref="GrowAsync"/>).</summary>
    public bool CanGrowLive => (_control.Features & UblkFeatures.UpdateSize) != 0;

    public IBlockBackend Backend { get; }

    /// <summary>
    /// True when the device has UBLK_F_AUTO_BUF_REG: the kernel registers each request's pages in the
    /// queue ring, and a backend that serves registered buffers moves data with no user copy.
    /// </summary>
    public bool ZeroCopy => UsesAutoBufferRegistration(Info.Flags);

    /// <summary>True when the kernel gave USER_RECOVERY|REISSUE: a crash leaves the device for another process to adopt.</summary>
    public bool RecoveryEnabled => (Info.Flags & (UblkFeatures.UserRecovery | UblkFeatures.UserRecoveryReissue))
        == (UblkFeatures.UserRecovery | UblkFeatures.UserRecoveryReissue);

    /// <summary>
    /// Completes when every queue thread has finished: after a stop or release, or when the device
    /// was stopped from outside (e.g. <c>ublk-csi detach</c>). Faults as soon as one queue fails,
    /// so the owner can stop the device instead of serving it half-dead.
    /// </summary>
    public Task Completion => _completion;

    /// <summary>Per-queue counters (requests, backend errors, bytes the queue threads allocated).</summary>
    public IReadOnlyList<UblkQueueStatistics> GetStatistics() => _queues.Select(q => q.Statistics).ToArray();

    /// <summary>Adds a new device serving <paramref name="backend"/> and starts it; /dev/ublkbN exists on return.</summary>
    public static async Task<UblkDevice> CreateAsync(UblkControl control, IBlockBackend backend, UblkDeviceOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(control);
        ArgumentNullException.ThrowIfNull(backend);
        options ??= new UblkDeviceOptions();
        options.Validate();
        var flags = RequestedFlags(control.Features, options, backend);
        var maxIoBytes = options.EffectiveMaxIoBytes(backend.Info, flags);
        var parameters = UblkDeviceParameters.ForBackend(backend.Info, maxIoBytes);
        parameters.Validate();

        var info = control.AddDevice(options.DeviceId ?? -1, options.EffectiveQueues, options.Depth, maxIoBytes, flags);
        UblkDevice? device = null;
        try
        {
            // The kernel may round max_io_buf_bytes down; requests never exceed what it granted.
            parameters = parameters with { MaxIoBytes = Math.Min(parameters.MaxIoBytes, info.MaxIoBytes) };
            control.SetParameters(info.Id, parameters);
            var charDevice = await OpenCharDeviceAsync(info, cancellationToken).ConfigureAwait(false);
            device = new UblkDevice(control, info, parameters, backend, options, charDevice);
            await device.StartQueuesAsync().ConfigureAwait(false);
            device.WriteRecoveryRecord(previous: null, recoveredAt: null);
            await Task.Run(() => control.StartDevice(info.Id, Environment.ProcessId), CancellationToken.None).ConfigureAwait(false);
            return device;
        }
        catch
        {
            if (device != null)
            {
                await device.TearDownAfterFailedStartAsync().ConfigureAwait(false);
            }
            else
            {
                TryDelete(control, info.Id);
            }

            throw;
        }
    }

    /// <summary>
    /// Adopts device <paramref name="id"/> whose server died (state QUIESCED, created with user
    /// recovery): requests queued meanwhile, and those the dead server held, are served by
    /// <paramref name="backend"/>, which must be able to serve the device as it was announced
    /// (<see cref="AdoptionMismatch"/>). Waits up to
    /// <see cref="UblkDeviceOptions.RecoveryTimeout"/> for the old server to be gone.
    /// </summary>
    public static async Task<UblkDevice> RecoverAsync(UblkControl control, int id, IBlockBackend backend, UblkDeviceOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(control);
        ArgumentNullException.ThrowIfNull(backend);
        ArgumentOutOfRangeException.ThrowIfNegative(id);
        options ??= new UblkDeviceOptions();
        options.Validate();

        // Everything that can refuse the adoption is checked before START_USER_RECOVERY, which
        // resets the kernel's queues and cannot be undone by this process.
        var parameters = control.GetParameters(id);
        if (AdoptionMismatch(backend.Info, parameters) is { } mismatch)
        {
            throw new UblkException($"cannot adopt ublk device {id}: {mismatch}", Errno.EINVAL);
        }

        var flags = control.GetDeviceInfo(id).Flags;
        if ((flags & UblkFeatures.UserRecovery) == 0)
        {
            throw new UblkException($"cannot adopt ublk device {id}: it was created without user recovery", Errno.EINVAL);
        }

        if ((flags & UblkFeatures.AutoBufReg) != 0 && (flags & UblkFeatures.UserCopy) == 0)
        {
            // Requests the backend cannot serve from registered pages need the user-copy channel.
            throw new UblkException($"cannot adopt ublk device {id}: it has AUTO_BUF_REG without USER_COPY, which this engine does not serve", Errno.EINVAL);
        }

        await StartUserRecoveryAsync(control, id, options.RecoveryTimeout, cancellationToken).ConfigureAwait(false);
        var info = control.GetDeviceInfo(id);
        var charDevice = await OpenCharDeviceAsync(info, cancellationToken).ConfigureAwait(false);
        var device = new UblkDevice(control, info, parameters, backend, options, charDevice);
        try
        {
            await device.StartQueuesAsync().ConfigureAwait(false);
            await Task.Run(() => control.EndUserRecovery(id, Environment.ProcessId), CancellationToken.None).ConfigureAwait(false);
            // Inside the try: a device this process serves but cannot record could never be adopted
            // again after this process ends, and the caller, which gets no device, could not stop it.
            device.WriteRecoveryRecord(device.TryReadExisting(), recoveredAt: DateTimeOffset.UtcNow);
        }
        catch
        {
            // Leave the device QUIESCED for another attempt: release our queues without stopping it.
            await device.ReleaseQueuesAsync(holdNewRequests: true).ConfigureAwait(false);
            throw;
        }

        return device;
    }

    /// <summary>
    /// Why a backend described by <paramref name="backend"/> cannot serve a live device announced with
    /// <paramref name="device"/>, or null when it can. The kernel keeps the announced parameters across
    /// recovery, so the backend must hold every block the device has and keep every durability
    /// promise it made: where the device was announced without a volatile cache the kernel never
    /// sends FLUSH, and where it was announced with FUA it relies on FUA writes, so a backend that
    /// caches writes, or ignores FUA, would acknowledge writes a crash can lose. A larger backend is
    /// fine (a volume grown while its device was served): the device keeps its size until resized.
    /// Other differences (discard, write-zeroes, read-only, block size) fail single requests with an
    /// error the filesystem reports, which is better than a device left without a server.
    /// </summary>
    public static string? AdoptionMismatch(BlockBackendInfo backend, UblkDeviceParameters device)
    {
        if (backend.SizeBytes < device.SizeBytes)
        {
            return $"its size is {device.SizeBytes} bytes but the backend has only {backend.SizeBytes}";
        }

        if ((backend.Features & BlockBackendFeatures.VolatileCache) != 0 && !device.VolatileCache)
        {
            return "the backend caches writes but the device was announced without a volatile cache, so the kernel would never flush it";
        }

        if (device.Fua && (backend.Features & BlockBackendFeatures.Fua) == 0)
        {
            return "the device lets the kernel send FUA writes but the backend does not honour FUA";
        }

        return null;
    }

    /// <summary>
    /// Stops and deletes the device: /dev/ublkbN goes away after the kernel drains it; backend I/O
    /// still running after <see cref="UblkDeviceOptions.DrainTimeout"/> is failed with EIO.
    /// Idempotent; also safe when the device was already stopped from outside.
    /// </summary>
    public Task StopAsync()
    {
        lock (_lifecycleGate)
        {
            return _shutdown ??= StopCoreAsync();
        }
    }

    /// <summary>
    /// Stops serving without deleting the device, for a planned handover: once backend I/O in flight
    /// completes, the queues close and the kernel quiesces the device (queued I/O waits) until another
    /// process calls <see cref="RecoverAsync"/>. Needs <see cref="RecoveryEnabled"/>.
    /// </summary>
    public Task ReleaseAsync()
    {
        if (!RecoveryEnabled)
        {
            throw new InvalidOperationException($"ublk device {Id} was created without user recovery; releasing it would delete it. Use StopAsync.");
        }

        lock (_lifecycleGate)
        {
            return _shutdown ??= ReleaseQueuesAsync(holdNewRequests: true);
        }
    }

    public async ValueTask DisposeAsync() => await StopAsync().ConfigureAwait(false);

    /// <summary>
    /// Grows the live device to <paramref name="sizeBytes"/> (UBLK_U_CMD_UPDATE_SIZE, Linux 6.16+;
    /// see <see cref="CanGrowLive"/>). The backend must already serve the new size: the queues accept
    /// the larger range first, then the kernel is told and /dev/ublkbN changes capacity (the kernel
    /// announces it with a change uevent). The recovery record keeps the new size, so a later
    /// process adopts the device at it. Shrinking is refused: data would vanish under a filesystem.
    /// </summary>
    public async Task GrowAsync(long sizeBytes, CancellationToken cancellationToken = default)
    {
        if (!CanGrowLive)
        {
            throw new UblkException($"ublk device {Id} cannot change size while live: this kernel lacks UBLK_U_CMD_UPDATE_SIZE (Linux 6.16+)", Errno.EOPNOTSUPP);
        }

        var current = Parameters.SizeBytes;
        if (sizeBytes < current || sizeBytes % Parameters.LogicalBlockSize != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(sizeBytes), $"ublk device {Id} can only grow to a multiple of its {Parameters.LogicalBlockSize}-byte blocks (now {current} bytes, asked {sizeBytes})");
        }

        if (Backend.Info.SizeBytes < sizeBytes)
        {
            throw new InvalidOperationException($"ublk device {Id}: the backend serves {Backend.Info.SizeBytes} bytes; grow it before the device");
        }

        if (sizeBytes == current)
        {
            return;
        }

        _capacity.GrowTo(sizeBytes);
        await Task.Run(() => _control.UpdateSize(Id, sizeBytes >> 9), cancellationToken).ConfigureAwait(false);
        Parameters = Parameters with { SizeBytes = sizeBytes };
        var previous = TryReadExisting();
        WriteRecoveryRecord(previous, previous?.RecoveredAt);
    }

    /// <summary>
    /// The flags ADD_DEV asks for. AUTO_BUF_REG only together with USER_COPY (requests the backend
    /// declines, e.g. FUA or unaligned ones, are copied through it) and only for a backend that
    /// serves registered buffers: for any other, per-request registration would be pure cost.
    /// </summary>
    internal static UblkFeatures RequestedFlags(UblkFeatures offered, UblkDeviceOptions options, IBlockBackend backend)
    {
        var flags = UblkFeatures.UringCmdCompInTask;
        flags |= offered & UblkFeatures.CmdIoctlEncode;
        if (options.PreferUserCopy)
        {
            flags |= offered & UblkFeatures.UserCopy;
        }

        var zeroCopy = UblkFeatures.UserCopy | UblkFeatures.AutoBufReg;
        if (options.PreferUserCopy && options.AutoBufferRegistration && (offered & zeroCopy) == zeroCopy
            && backend is IRegisteredBufferBackend { ServesRegisteredBuffers: true })
        {
            flags |= UblkFeatures.AutoBufReg;
        }

        var recovery = UblkFeatures.UserRecovery | UblkFeatures.UserRecoveryReissue;
        if (options.EnableRecovery && (offered & recovery) == recovery)
        {
            flags |= recovery;
        }

        return flags;
    }

    private static bool UsesAutoBufferRegistration(UblkFeatures granted) =>
        (granted & (UblkFeatures.AutoBufReg | UblkFeatures.UserCopy)) == (UblkFeatures.AutoBufReg | UblkFeatures.UserCopy);

    /// <summary>The queue's CPUs, or null (thread left unpinned) when the kernel will not say.</summary>
    private static CpuSet? QueueAffinity(UblkControl control, int id, int queueId, ILogger logger)
    {
        try
        {
            return control.GetQueueAffinity(id, queueId);
        }
        catch (UblkException e)
        {
            EngineLog.QueueAffinityUnknown(logger, id, queueId, e.Errno, Errno.Describe(e.Errno));
            return null;
        }
    }

    private static async Task StartUserRecoveryAsync(UblkControl control, int id, TimeSpan timeout, CancellationToken cancellationToken)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            try
            {
                control.StartUserRecovery(id);
                return;
            }
            catch (UblkException e) when (e.Errno == Errno.EBUSY && DateTime.UtcNow < deadline)
            {
                // The dead server's files are still being released, or the kernel is quiescing.
                await Task.Delay(RetryInterval, cancellationToken).ConfigureAwait(false);
            }
            catch (UblkException e) when (e.Errno == Errno.EBUSY)
            {
                var info = control.GetDeviceInfo(id);
                throw new UblkException(
                    $"cannot adopt ublk device {id}: it is {info.State} (server pid {info.ServerPid}) after {timeout.TotalSeconds:0.#} s; only a device whose server died can be recovered",
                    Errno.EBUSY,
                    e);
            }
            catch (UblkException e) when (e.Errno == Errno.EINVAL)
            {
                // The kernel answers EINVAL when no queue is set up, which is also the state an
                // adoption attempt that failed after START_USER_RECOVERY leaves behind: carry on from there.
                if (control.GetDeviceInfo(id).State == UblkDeviceState.Quiesced)
                {
                    return;
                }

                throw new UblkException($"cannot adopt ublk device {id}: it was never started", Errno.EINVAL, e);
            }
        }
    }

    private static async Task<FileDescriptorHandle> OpenCharDeviceAsync(UblkDeviceInfo info, CancellationToken cancellationToken)
    {
        // devtmpfs/udev creates the node shortly after ADD_DEV.
        for (var attempt = 1; ; attempt++)
        {
            var fd = FileDescriptorHandle.TryOpen(info.CharDevicePath, Libc.O_RDWR, out var errno);
            if (fd != null)
            {
                return fd;
            }

            if (errno != Errno.ENOENT || attempt == CharDeviceOpenAttempts)
            {
                var hint = errno == Errno.EBUSY ? ": another process serves this device" : string.Empty;
                throw new UblkException($"cannot open {info.CharDevicePath}: {Errno.Describe(errno)}{hint}", errno);
            }

            await Task.Delay(RetryInterval, cancellationToken).ConfigureAwait(false);
        }
    }

    private static void TryDelete(UblkControl control, int id)
    {
        try
        {
            control.DeleteDevice(id, waitForRelease: false);
        }
        catch (UblkException)
        {
            // Best effort while unwinding another failure.
        }
    }

    private async Task StartQueuesAsync()
    {
        foreach (var queue in _queues)
        {
            queue.Start();
        }

        await Task.WhenAll(_queues.Select(q => q.Ready)).ConfigureAwait(false);
    }

    private async Task StopCoreAsync()
    {
        var stop = Task.Run(() => _control.StopDevice(Id));
        var finished = await Task.WhenAny(stop, Task.Delay(_options.DrainTimeout)).ConfigureAwait(false);
        if (finished != stop)
        {
            // The kernel waits for every request to complete; a backend that never answers must not hang the stop.
            foreach (var queue in _queues)
            {
                queue.AbandonInFlight();
            }
        }

        Exception? stopFailure = null;
        try
        {
            await stop.ConfigureAwait(false);
        }
        catch (UblkException e) when (e.Errno == Errno.ENODEV)
        {
            // Deleted from outside already.
        }
        catch (Exception e)
        {
            stopFailure = e;
        }

        await ReleaseQueuesAsync(holdNewRequests: false).ConfigureAwait(false);
        try
        {
            _control.DeleteDevice(Id, waitForRelease: false);
        }
        catch (UblkException e) when (e.Errno == Errno.ENODEV)
        {
            // Deleted from outside already.
        }

        _recoveryStore?.Delete(Id);
        if (stopFailure != null)
        {
            throw stopFailure;
        }
    }

    private async Task ReleaseQueuesAsync(bool holdNewRequests)
    {
        foreach (var queue in _queues)
        {
            queue.RequestExit(holdNewRequests);
        }

        // Queues exit once their backend I/O is done; one that never answers must not pin them.
        var finished = await Task.WhenAny(_allQueuesExited, Task.Delay(_options.DrainTimeout)).ConfigureAwait(false);
        if (finished != _allQueuesExited)
        {
            foreach (var queue in _queues)
            {
                queue.AbandonInFlight();
            }
        }

        try
        {
            await _allQueuesExited.ConfigureAwait(false);
        }
        catch (UblkException)
        {
            // A queue fault is reported through Completion; shutting down continues.
        }
        finally
        {
            // Only now: the queue threads used the descriptor for mmap and user copy.
            _charDevice.Dispose();
        }
    }

    private async Task WatchQueuesAsync()
    {
        var running = _queues.Select(q => q.Exited).ToList();
        while (running.Count > 0)
        {
            var exited = await Task.WhenAny(running).ConfigureAwait(false);
            await exited.ConfigureAwait(false); // a fault ends the watch at once
            running.Remove(exited);
        }
    }

    private async Task TearDownAfterFailedStartAsync()
    {
        await ReleaseQueuesAsync(holdNewRequests: false).ConfigureAwait(false);
        TryDelete(_control, Id);
        _recoveryStore?.Delete(Id);
    }

    /// <summary>
    /// Writes this device's record; <paramref name="previous"/> (the record read before, if any) keeps
    /// its creation time and, when these options name none, its backend description.
    /// </summary>
    private void WriteRecoveryRecord(UblkRecoveryRecord? previous, DateTimeOffset? recoveredAt)
    {
        if (_recoveryStore == null)
        {
            return;
        }

        var description = _options.BackendDescription ?? previous?.Backend;
        var record = new UblkRecoveryRecord(
            Id,
            Info.Queues,
            Info.Depth,
            Parameters,
            // Stored as given: it is the store's own secret-free spec, and recovery reopens the store from
            // it (a token-file path must survive; rewriting it would make the device unrecoverable).
            description,
            previous?.CreatedAt ?? DateTimeOffset.UtcNow)
        {
            RecoveredAt = recoveredAt,
            ServerPid = Environment.ProcessId,
            AutoBufferRegistration = ZeroCopy,
        };
        try
        {
            _recoveryStore.Write(record);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new UblkException(
                $"cannot write the recovery record {_recoveryStore.PathFor(Id)}: {e.Message} (choose another RecoveryStateDirectory, or disable recovery)",
                0,
                e);
        }
    }

    private UblkRecoveryRecord? TryReadExisting()
    {
        try
        {
            return _recoveryStore?.TryRead(Id);
        }
        catch (UblkException)
        {
            return null;
        }
    }
}
