using System.Runtime.InteropServices;
using UblkCsi.Engine.Abi;
using UblkCsi.Engine.Interop;
using UblkCsi.Engine.IoUring;
using UblkCsi.Linux;

namespace UblkCsi.Engine;

/// <summary>
/// The control plane: /dev/ublk-control driven through an SQE128 io_uring. Commands are serialised
/// (one in flight per process, as the kernel's add/delete paths prefer), and each call blocks until
/// the kernel answers; some (DEL_DEV, START_DEV) may take a while. Open one per process and share it.
/// </summary>
public sealed unsafe class UblkControl : IDisposable
{
    private const int ScratchBytes = 4096;

    private readonly Lock _gate = new();
    private readonly FileDescriptorHandle _controlFd;
    private readonly Ring _ring;
    private readonly byte* _scratch;
    private bool _ioctlEncoding = true;
    private bool _disposed;

    private UblkControl(FileDescriptorHandle controlFd, Ring ring)
    {
        _controlFd = controlFd;
        _ring = ring;
        // Kernel-visible argument buffer; commands are serialised, so one is enough. Native memory,
        // so a command the kernel still works on never points into a moved or freed managed object.
        _scratch = (byte*)NativeMemory.AlignedAlloc(ScratchBytes, 64);
        Features = QueryFeatures();
    }

    /// <summary>Features this kernel offers (GET_FEATURES); None on kernels before 6.5 that lack the command.</summary>
    public UblkFeatures Features { get; }

    /// <summary>Opens the control device. Fails with a message that says how to fix the host.</summary>
    public static UblkControl Open(string controlDevicePath = HostSupport.ControlDevicePath)
    {
        var fd = FileDescriptorHandle.TryOpen(controlDevicePath, Libc.O_RDWR, out var errno);
        if (fd == null)
        {
            var hint = errno switch
            {
                Errno.ENOENT => "load the ublk_drv kernel module (modprobe ublk_drv)",
                Errno.EACCES or Errno.EPERM => "ublk devices need CAP_SYS_ADMIN (run as root)",
                _ => "check the ublk_drv module",
            };
            throw new UblkException($"cannot open {controlDevicePath}: {Errno.Describe(errno)}: {hint}", errno);
        }

        try
        {
            // Control commands require 128-byte SQEs (the 80-byte command area).
            var ring = Ring.Create(4, IoUringSetupFlags.Sqe128);
            return new UblkControl(fd, ring);
        }
        catch
        {
            fd.Dispose();
            throw;
        }
    }

    /// <summary>Asks the kernel again which features it offers.</summary>
    public UblkFeatures GetFeatures() => QueryFeatures();

    /// <summary>Kernel facts about device <paramref name="id"/>.</summary>
    public UblkDeviceInfo GetDeviceInfo(int id)
    {
        lock (_gate)
        {
            var info = (UblksrvCtrlDevInfo*)_scratch;
            *info = default;
            Execute(UblkControlCommand.GetDevInfo, id, (ulong)info, (ushort)sizeof(UblksrvCtrlDevInfo), 0);
            return UblkDeviceInfo.FromKernel(*info);
        }
    }

    /// <summary>Block-layer parameters of device <paramref name="id"/> (they persist in the kernel across servers).</summary>
    public UblkDeviceParameters GetParameters(int id)
    {
        lock (_gate)
        {
            var p = (UblkParams*)_scratch;
            *p = default;
            p->Length = (uint)sizeof(UblkParams);
            Execute(UblkControlCommand.GetParams, id, (ulong)p, (ushort)sizeof(UblkParams), 0);
            return UblkDeviceParameters.FromKernel(*p);
        }
    }

    /// <summary>
    /// The CPUs the kernel maps to queue <paramref name="queueId"/> of device <paramref name="id"/>
    /// (GET_QUEUE_AFFINITY): requests submitted on them land on that queue, so its thread belongs there.
    /// </summary>
    public Threading.CpuSet GetQueueAffinity(int id, int queueId)
    {
        lock (_gate)
        {
            var mask = new Span<byte>(_scratch, Threading.CpuSet.ByteLength);
            mask.Clear();
            Execute(UblkControlCommand.GetQueueAffinity, id, (ulong)_scratch, Threading.CpuSet.ByteLength, (ulong)queueId);
            return Threading.CpuSet.FromBytes(mask);
        }
    }

    /// <summary>Every ublk device on the host, by scanning the ublk-char class for ids.</summary>
    public IReadOnlyList<UblkDeviceInfo> ListDevices()
    {
        var devices = new List<UblkDeviceInfo>();
        foreach (var id in EnumerateDeviceIds())
        {
            try
            {
                devices.Add(GetDeviceInfo(id));
            }
            catch (UblkException e) when (e.Errno == Errno.ENODEV)
            {
                // Deleted between the scan and the query.
            }
        }

        devices.Sort((a, b) => a.Id.CompareTo(b.Id));
        return devices;
    }

    /// <summary>Stops device <paramref name="id"/>: removes /dev/ublkbN and aborts the server's queued commands. No-op when already stopped.</summary>
    public void StopDevice(int id)
    {
        lock (_gate)
        {
            Execute(UblkControlCommand.StopDev, id, 0, 0, 0);
        }
    }

    /// <summary>
    /// Deletes device <paramref name="id"/>. With <paramref name="waitForRelease"/> the call returns
    /// when the id is free again (every opener of /dev/ublkcN and /dev/ublkbN is gone); without it the
    /// kernel finishes in the background (DEL_DEV_ASYNC, 6.9+, falling back to the waiting form).
    /// </summary>
    public void DeleteDevice(int id, bool waitForRelease = true)
    {
        lock (_gate)
        {
            if (!waitForRelease && _ioctlEncoding)
            {
                try
                {
                    Execute(UblkControlCommand.DelDevAsync, id, 0, 0, 0, allowLegacyRetry: false);
                    return;
                }
                catch (UblkException e) when (e.Errno is Errno.EOPNOTSUPP or Errno.EINVAL)
                {
                    // Before 6.9: only the waiting form exists.
                }
            }

            Execute(UblkControlCommand.DelDev, id, 0, 0, 0);
        }
    }

    internal UblkDeviceInfo AddDevice(int requestedId, int queues, int depth, int maxIoBytes, UblkFeatures flags)
    {
        lock (_gate)
        {
            var info = (UblksrvCtrlDevInfo*)_scratch;
            *info = default;
            info->NrHwQueues = (ushort)queues;
            info->QueueDepth = (ushort)depth;
            info->MaxIoBufBytes = (uint)maxIoBytes;
            info->DevId = requestedId < 0 ? UblkAbi.AllocateDeviceId : (uint)requestedId;
            info->UblksrvPid = -1;
            info->Flags = (ulong)flags;
            Execute(UblkControlCommand.AddDev, (int)info->DevId, (ulong)info, (ushort)sizeof(UblksrvCtrlDevInfo), 0, queueId: UblkAbi.NoQueue);
            return UblkDeviceInfo.FromKernel(*info);
        }
    }

    internal void SetParameters(int id, UblkDeviceParameters parameters)
    {
        var kernelParams = parameters.ToKernel();
        lock (_gate)
        {
            var p = (UblkParams*)_scratch;
            *p = kernelParams;
            Execute(UblkControlCommand.SetParams, id, (ulong)p, (ushort)sizeof(UblkParams), 0);
        }
    }

    /// <summary>START_DEV: returns once every queue fetched its tags and the disk is added.</summary>
    internal void StartDevice(int id, int serverPid)
    {
        lock (_gate)
        {
            Execute(UblkControlCommand.StartDev, id, 0, 0, (ulong)serverPid);
        }
    }

    /// <summary>UPDATE_SIZE (6.16+, <see cref="UblkFeatures.UpdateSize"/>): a live device's new size in 512-byte sectors.</summary>
    internal void UpdateSize(int id, long sectors)
    {
        lock (_gate)
        {
            Execute(UblkControlCommand.UpdateSize, id, 0, 0, (ulong)sectors, allowLegacyRetry: false);
        }
    }

    internal void StartUserRecovery(int id)
    {
        lock (_gate)
        {
            Execute(UblkControlCommand.StartUserRecovery, id, 0, 0, 0);
        }
    }

    internal void EndUserRecovery(int id, int serverPid)
    {
        lock (_gate)
        {
            Execute(UblkControlCommand.EndUserRecovery, id, 0, 0, (ulong)serverPid);
        }
    }

    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            _ring.Dispose();
            _controlFd.Dispose();
            NativeMemory.AlignedFree(_scratch);
        }
    }

    internal static IEnumerable<int> EnumerateDeviceIds()
    {
        // The class directory lists devices even where /dev is not populated by udev.
        const string ClassDirectory = "/sys/class/ublk-char";
        var names = Directory.Exists(ClassDirectory)
            ? Directory.EnumerateFileSystemEntries(ClassDirectory, "ublkc*")
            : Directory.Exists("/dev") ? Directory.EnumerateFileSystemEntries("/dev", "ublkc*") : [];
        foreach (var path in names)
        {
            var name = Path.GetFileName(path);
            if (int.TryParse(name.AsSpan("ublkc".Length), System.Globalization.NumberStyles.None, null, out var id))
            {
                yield return id;
            }
        }
    }

    private UblkFeatures QueryFeatures()
    {
        lock (_gate)
        {
            var features = (ulong*)_scratch;
            *features = 0;
            try
            {
                // GET_FEATURES exists only in ioctl-encoded form.
                Execute(UblkControlCommand.GetFeatures, -1, (ulong)features, sizeof(ulong), 0, allowLegacyRetry: false);
                var offered = (UblkFeatures)(*features);
                _ioctlEncoding = (offered & UblkFeatures.CmdIoctlEncode) != 0;
                return offered;
            }
            catch (UblkException e) when (e.Errno is Errno.EOPNOTSUPP or Errno.EINVAL or Errno.ENODEV)
            {
                // Kernels before 6.5: no GET_FEATURES; fall back to legacy opcodes if encoded ones fail.
                return UblkFeatures.None;
            }
        }
    }

    /// <summary>Sends one control command and waits for its completion. Caller holds <see cref="_gate"/>.</summary>
    private void Execute(UblkControlCommand command, int id, ulong address, ushort length, ulong data0, ushort queueId = UblkAbi.NoQueue, bool allowLegacyRetry = true)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var result = Submit(command, id, address, length, data0, queueId, _ioctlEncoding);
        if (result is -Errno.EOPNOTSUPP or -Errno.EINVAL && _ioctlEncoding && allowLegacyRetry && Features == UblkFeatures.None)
        {
            // A kernel too old for GET_FEATURES may know only the bare command numbers.
            var legacy = Submit(command, id, address, length, data0, queueId, ioctlEncoded: false);
            if (legacy >= 0)
            {
                _ioctlEncoding = false;
            }

            result = legacy == -Errno.EOPNOTSUPP ? result : legacy;
        }

        if (result < 0)
        {
            throw Failure(command, id, -result);
        }
    }

    private int Submit(UblkControlCommand command, int id, ulong address, ushort length, ulong data0, ushort queueId, bool ioctlEncoded)
    {
        var sqe = _ring.GetSqe();
        sqe->PrepareUringCmd(_controlFd.Fd, UblkAbi.ControlOpcode(command, ioctlEncoded), (ulong)command);
        var header = (UblksrvCtrlCmd*)IoUringSqe.CommandArea(sqe);
        header->DevId = unchecked((uint)id);
        header->QueueId = queueId;
        header->Length = length;
        header->Address = address;
        header->Data0 = data0;
        return _ring.WaitCompletion().Result;
    }

    private static UblkException Failure(UblkControlCommand command, int id, int errno)
    {
        var name = CommandName(command);
        var subject = id >= 0 && command != UblkControlCommand.AddDev ? $"{name} for ublk device {id}" : name;
        var hint = errno switch
        {
            Errno.EPERM or Errno.EACCES => ": ublk devices need CAP_SYS_ADMIN (run as root)",
            Errno.ENODEV => $": there is no ublk device {id}",
            Errno.EBUSY => command == UblkControlCommand.StartUserRecovery
                ? ": the device is still served by a live process or is not quiesced yet"
                : ": the device is busy",
            Errno.EEXIST => command == UblkControlCommand.AddDev ? $": device id {id} is taken" : ": the device is already started",
            _ => string.Empty,
        };
        return new UblkException($"{subject} failed: {Errno.Describe(errno)}{hint}", errno);
    }

    private static string CommandName(UblkControlCommand command) => command switch
    {
        UblkControlCommand.GetDevInfo => "GET_DEV_INFO",
        UblkControlCommand.AddDev => "ADD_DEV",
        UblkControlCommand.DelDev => "DEL_DEV",
        UblkControlCommand.DelDevAsync => "DEL_DEV_ASYNC",
        UblkControlCommand.StartDev => "START_DEV",
        UblkControlCommand.StopDev => "STOP_DEV",
        UblkControlCommand.SetParams => "SET_PARAMS",
        UblkControlCommand.GetParams => "GET_PARAMS",
        UblkControlCommand.StartUserRecovery => "START_USER_RECOVERY",
        UblkControlCommand.EndUserRecovery => "END_USER_RECOVERY",
        UblkControlCommand.GetFeatures => "GET_FEATURES",
        UblkControlCommand.GetQueueAffinity => "GET_QUEUE_AFFINITY",
        _ => command.ToString(),
    };
}
