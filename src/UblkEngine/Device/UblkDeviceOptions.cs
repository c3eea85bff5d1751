namespace UblkCsi.Engine;

/// <summary>How a device is created or adopted. Defaults suit one busy device; for hundreds of
/// mostly idle devices per process use <c>Queues = 1</c> and a modest <c>Depth</c>.</summary>
public sealed record UblkDeviceOptions
{
    public const string DefaultRecoveryStateDirectory = "/var/lib/ublk-csi/devices";
    public const int DefaultDepth = 128;
    public const int DefaultMaxIoBytes = 512 * 1024;

    /// <summary>
    /// Request size of a zero-copy device: a 1 MiB I/O stays one request, as on loop (1280 KiB), and
    /// measured better than 512 KiB in the 6.17 VM (docs/design.md, Engine).
    /// </summary>
    public const int ZeroCopyMaxIoBytes = 1 << 20;

    /// <summary>Hardware queues, each served by its own thread. Null: min(CPUs, 4). The kernel caps it at the CPU count.</summary>
    public int? Queues { get; init; }

    /// <summary>Requests in flight per queue, 1..4096.</summary>
    public int Depth { get; init; } = DefaultDepth;

    /// <summary>
    /// Largest single request in bytes: a multiple of 4096 from 4 KiB to 32 MiB. Null: <see cref="ZeroCopyMaxIoBytes"/>
    /// for a zero-copy device, else the backend's <see cref="BlockBackendInfo.PreferredMaxIoBytes"/>, or
    /// <see cref="DefaultMaxIoBytes"/> without one.
    /// </summary>
    public int? MaxIoBytes { get; init; }

    /// <summary>Ask the kernel for this device id; null lets it allocate one.</summary>
    public int? DeviceId { get; init; }

    /// <summary>
    /// Move data with USER_COPY when the kernel offers it (buffers rented per request). False forces
    /// the older per-tag buffers of <see cref="MaxIoBytes"/> each (more memory, one copy less in the kernel).
    /// </summary>
    public bool PreferUserCopy { get; init; } = true;

    /// <summary>
    /// Ask for UBLK_F_AUTO_BUF_REG (Linux 6.16+) when the backend serves registered buffers
    /// (<see cref="IRegisteredBufferBackend"/>): data then moves between the store and the request's
    /// pages with no user copy. Needs <see cref="PreferUserCopy"/>. False keeps the copy path (for A/B measurements).
    /// </summary>
    public bool AutoBufferRegistration { get; init; } = true;

    /// <summary>Create the device with USER_RECOVERY|REISSUE so another process can adopt it after a crash.</summary>
    public bool EnableRecovery { get; init; } = true;

    /// <summary>Where recovery records are kept; null keeps none.</summary>
    public string? RecoveryStateDirectory { get; init; } = DefaultRecoveryStateDirectory;

    /// <summary>How to reopen the backend (e.g. "file:/data/vol1"), stored in the recovery record unchanged. Must not contain secrets (store specs name files that hold them).</summary>
    public string? BackendDescription { get; init; }

    /// <summary>How long adoption waits for a dead server's device to become QUIESCED.</summary>
    public TimeSpan RecoveryTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>How long a stop waits for backend I/O in flight before failing it with EIO (a handover then leaves it for the next server).</summary>
    public TimeSpan DrainTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Buffers for USER_COPY requests; null uses <see cref="Buffers.IoBufferPool.Shared"/>.</summary>
    public Buffers.IoBufferPool? BufferPool { get; init; }

    /// <summary>
    /// Where the engine reports what it cannot fix itself (a refused PR_SET_IO_FLUSHER, the first
    /// failure of each kind per device); null logs nothing.
    /// </summary>
    public Microsoft.Extensions.Logging.ILogger? Logger { get; init; }

    internal int EffectiveQueues => Queues ?? Math.Min(Environment.ProcessorCount, 4);

    /// <summary>
    /// The request size limit for a device serving <paramref name="backend"/> with the <paramref name="flags"/>
    /// ADD_DEV asks for. Zero copy (AUTO_BUF_REG) needs no buffer at all, so its devices take
    /// <see cref="ZeroCopyMaxIoBytes"/>. The backend's preference counts only with USER_COPY, where
    /// buffers are rented per request: per-tag buffers of that size would cost depth times as much
    /// memory. A preference outside the valid range is ignored.
    /// </summary>
    internal int EffectiveMaxIoBytes(BlockBackendInfo backend, UblkFeatures flags)
    {
        if (MaxIoBytes is { } chosen)
        {
            return chosen;
        }

        if ((flags & UblkFeatures.AutoBufReg) != 0)
        {
            return ZeroCopyMaxIoBytes;
        }

        return (flags & UblkFeatures.UserCopy) != 0 && IsValidMaxIoBytes(backend.PreferredMaxIoBytes) ? backend.PreferredMaxIoBytes : DefaultMaxIoBytes;
    }

    private static bool IsValidMaxIoBytes(int bytes) => bytes >= 4096 && bytes <= Abi.UblkAbi.UserCopyMaxBytes && bytes % 4096 == 0;

    /// <summary>Throws an <see cref="ArgumentException"/> naming the first invalid option and its allowed values.</summary>
    public void Validate()
    {
        if (Queues is { } queues && (queues < 1 || queues > Abi.UblkAbi.MaxQueues))
        {
            throw new ArgumentOutOfRangeException(nameof(Queues), queues, $"Queues must be between 1 and {Abi.UblkAbi.MaxQueues}");
        }

        if (Depth < 1 || Depth > Abi.UblkAbi.MaxQueueDepth)
        {
            throw new ArgumentOutOfRangeException(nameof(Depth), Depth, $"Depth must be between 1 and {Abi.UblkAbi.MaxQueueDepth}");
        }

        if (MaxIoBytes is { } maxIo && !IsValidMaxIoBytes(maxIo))
        {
            throw new ArgumentOutOfRangeException(nameof(MaxIoBytes), maxIo, "MaxIoBytes must be a multiple of 4096 from 4096 to 33554432 (32 MiB)");
        }

        if (DeviceId is { } id && (id < 0 || id >= (1 << 20)))
        {
            throw new ArgumentOutOfRangeException(nameof(DeviceId), id, "DeviceId must be between 0 and 1048575, or null to let the kernel choose");
        }

        if (RecoveryTimeout <= TimeSpan.Zero || DrainTimeout <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(RecoveryTimeout <= TimeSpan.Zero ? nameof(RecoveryTimeout) : nameof(DrainTimeout), "timeouts must be positive");
        }

        if (BackendDescription is { } description && description.Any(char.IsControl))
        {
            throw new ArgumentException("BackendDescription must be one line without control characters", nameof(BackendDescription));
        }
    }
}
