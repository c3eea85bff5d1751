using Csi.V1;
using Grpc.Core;
using Microsoft.Extensions.Logging.Abstractions;
using UblkCsi.Engine;
using UblkCsi.Engine.Backends;
using UblkCsi.NodePlugin.Host;
using UblkCsi.NodePlugin.Volumes;
using UblkCsi.Stores;

namespace UblkCsi.NodePlugin.Tests;

/// <summary>A node plugin runtime over fakes: mounts, filesystems, devices and stores live in memory; paths are real temp dirs.</summary>
public sealed class FakeNode : IAsyncDisposable
{
    /// <summary>For host tests: real devices (never touched without volumes), no kubelet directory check.</summary>
    public static readonly NodeSystem HostSystem = new() { SkipKubeletDirectoryCheck = true };

    public const string BootId = "boot-1";

    private FakeNode(string root, FakeMounter mounter, FakeFilesystems filesystems, FakeDevices devices, FakeOpener opener, string bootId)
    {
        Root = root;
        Mounter = mounter;
        Filesystems = filesystems;
        Devices = devices;
        Opener = opener;
        Runtime = NodeRuntime.Start(
            new NodeRuntimeSettings("ublk.csi.test", "node-1", StateDirectory, KubeletDirectory, 42),
            NullLoggerFactory.Instance,
            new NodeSystem { Mounter = mounter, Filesystems = filesystems, Devices = devices, Opener = opener, SkipKubeletDirectoryCheck = true, BootId = bootId });
    }

    public string Root { get; }

    public string KubeletDirectory => Path.Combine(Root, "kubelet");

    public string StateDirectory => Path.Combine(Root, "state");

    public FakeMounter Mounter { get; }

    public FakeFilesystems Filesystems { get; }

    public FakeDevices Devices { get; }

    public FakeOpener Opener { get; }

    public NodeRuntime Runtime { get; }

    public NodeService Service => Runtime.Service;

    public static async Task<FakeNode> StartAsync(FakeNode? previous = null, string bootId = BootId)
    {
        var root = previous?.Root ?? Directory.CreateTempSubdirectory("ublk-node-test").FullName;
        Directory.CreateDirectory(Path.Combine(root, "kubelet"));
        var node = new FakeNode(root, previous?.Mounter ?? new FakeMounter(), previous?.Filesystems ?? new FakeFilesystems(), previous?.Devices ?? new FakeDevices(), previous?.Opener ?? new FakeOpener(), bootId);
        await node.Runtime.Adoption;
        return node;
    }

    public string StagingPath(string volumeId) =>
        Path.Combine(KubeletDirectory, "plugins/kubernetes.io/csi/ublk.csi.test", Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(volumeId))), "globalmount");

    public string TargetPath(string pod, string pv = "pv1") => Path.Combine(KubeletDirectory, "pods", pod, "volumes/kubernetes.io~csi", pv, "mount");

    public static VolumeCapability MountCapability(string fsType = "", VolumeCapability.Types.AccessMode.Types.Mode mode = VolumeCapability.Types.AccessMode.Types.Mode.SingleNodeWriter) => new()
    {
        Mount = new VolumeCapability.Types.MountVolume { FsType = fsType },
        AccessMode = new VolumeCapability.Types.AccessMode { Mode = mode },
    };

    public static VolumeCapability BlockCapability() => new()
    {
        Block = new VolumeCapability.Types.BlockVolume(),
        AccessMode = new VolumeCapability.Types.AccessMode { Mode = VolumeCapability.Types.AccessMode.Types.Mode.SingleNodeWriter },
    };

    public NodeStageVolumeRequest StageRequest(string volumeId, VolumeCapability? capability = null) => new()
    {
        VolumeId = volumeId,
        StagingTargetPath = StagingPath(volumeId),
        VolumeCapability = capability ?? MountCapability(),
        VolumeContext = { ["store"] = "file", ["root"] = "/srv/volumes", ["csi.storage.k8s.io/pv/name"] = "pv1" },
        Secrets = { ["token"] = "s3cret" },
    };

    public NodePublishVolumeRequest PublishRequest(string volumeId, string pod, VolumeCapability? capability = null, bool readOnly = false) => new()
    {
        VolumeId = volumeId,
        StagingTargetPath = StagingPath(volumeId),
        TargetPath = TargetPath(pod),
        VolumeCapability = capability ?? MountCapability(),
        Readonly = readOnly,
    };

    public async ValueTask DisposeAsync()
    {
        await Runtime.DisposeAsync();
    }

    public void DeleteFiles() => Directory.Delete(Root, recursive: true);
}

/// <summary>A ServerCallContext for calling a service directly.</summary>
public sealed class TestCallContext : ServerCallContext
{
    public static readonly TestCallContext Instance = new();

    protected override string MethodCore => "/test";

    protected override string HostCore => "localhost";

    protected override string PeerCore => "test";

    protected override DateTime DeadlineCore => DateTime.MaxValue;

    protected override Metadata RequestHeadersCore { get; } = [];

    protected override CancellationToken CancellationTokenCore => CancellationToken.None;

    protected override Metadata ResponseTrailersCore { get; } = [];

    protected override Status StatusCore { get; set; }

    protected override WriteOptions? WriteOptionsCore { get; set; }

    protected override AuthContext AuthContextCore { get; } = new(null, new Dictionary<string, List<AuthProperty>>());

    protected override ContextPropagationToken CreatePropagationTokenCore(ContextPropagationOptions? options) => throw new NotSupportedException();

    protected override Task WriteResponseHeadersAsyncCore(Metadata responseHeaders) => Task.CompletedTask;
}

/// <summary>A mount table in memory, with the same shapes as /proc/self/mountinfo.</summary>
public sealed class FakeMounter : IMounter
{
    private readonly List<MountEntry> _mounts = [];

    public List<string> Calls { get; } = [];

    public IReadOnlyList<MountEntry> ReadMounts()
    {
        lock (_mounts)
        {
            return _mounts.ToArray();
        }
    }

    public void Mount(string source, string target, string fsType, IReadOnlyList<string> options)
    {
        Assert.True(Directory.Exists(target), $"mount target {target} must exist");
        Add(new MountEntry("259:0", "/", target, options.Contains("ro") ? "ro,relatime" : "rw,relatime", true, fsType, source));
        Calls.Add($"mount -t {fsType} -o {string.Join(',', options)} {source} {target}");
    }

    public void BindMount(string source, string target, bool readOnly)
    {
        Assert.True(Directory.Exists(target) || File.Exists(target), $"bind target {target} must exist");
        var options = readOnly ? "ro,relatime" : "rw,relatime";
        if (source.StartsWith("/dev/", StringComparison.Ordinal))
        {
            Add(new MountEntry("0:6", "/" + Path.GetFileName(source), target, options, true, "devtmpfs", "udev"));
        }
        else
        {
            var under = MountTable.At(ReadMounts(), source) ?? throw new InvalidOperationException($"{source} is not mounted");
            Add(under with { MountPoint = target, Options = options });
        }

        Calls.Add($"bind {source} {target}{(readOnly ? " ro" : string.Empty)}");
    }

    public void Unmount(string target)
    {
        lock (_mounts)
        {
            var index = _mounts.FindLastIndex(m => m.MountPoint == target);
            if (index < 0)
            {
                throw new ExternalCommandException("umount " + target, 32, "not mounted");
            }

            _mounts.RemoveAt(index);
        }

        Calls.Add($"umount {target}");
    }

    private void Add(MountEntry entry)
    {
        lock (_mounts)
        {
            _mounts.Add(entry);
        }
    }
}

/// <summary>Filesystems by device path.</summary>
public sealed class FakeFilesystems : IFilesystemTools
{
    public Dictionary<string, string> OnDevice { get; } = [];

    public List<string> Calls { get; } = [];

    /// <summary>Runs inside every probe (tests: the store fails a read meanwhile).</summary>
    public Action<string>? DuringProbe { get; set; }

    public string? Probe(string device)
    {
        DuringProbe?.Invoke(device);
        return OnDevice.GetValueOrDefault(device);
    }

    public void Format(string device, string fsType)
    {
        Assert.False(OnDevice.ContainsKey(device), $"{device} formatted although it holds {OnDevice.GetValueOrDefault(device)}");
        OnDevice[device] = fsType;
        Calls.Add($"mkfs.{fsType} {device}");
    }

    public void Grow(string device, string mountPoint, string fsType) => Calls.Add($"grow {fsType} {device}");

    public void ApplyGroup(string mountPoint, string groupId) => Calls.Add($"group {groupId} {mountPoint}");
}

/// <summary>Devices in memory; a "crash" leaves them quiesced.</summary>
public sealed class FakeDevices : IVolumeDevices
{
    public Dictionary<int, FakeDevice> Devices { get; } = [];

    public List<int> ForgottenRecords { get; } = [];

    /// <summary>The engine's recovery records: written at create, removed by a stop, a forget or a delete.</summary>
    public HashSet<int> Records { get; } = [];

    /// <summary>Like a 6.16+ kernel (UBLK_U_CMD_UPDATE_SIZE) when set; the VM's 6.12 otherwise.</summary>
    public bool CanResizeLive { get; set; }

    public Task<IServedDevice> CreateAsync(IBlockBackend backend, string description, CancellationToken cancellationToken)
    {
        // Like the kernel: the lowest free id.
        var id = 0;
        while (Devices.TryGetValue(id, out var taken) && taken.Condition != DeviceCondition.Absent)
        {
            id++;
        }

        var device = new FakeDevice(id, backend.Info.SizeBytes) { Stopped = () => Records.Remove(id) };
        Devices[device.Id] = device;
        Records.Add(id);
        return Task.FromResult<IServedDevice>(device);
    }

    public Task<IServedDevice> AdoptAsync(int id, IBlockBackend backend, string description, CancellationToken cancellationToken)
    {
        var old = Devices[id];
        Assert.Equal(DeviceCondition.Quiesced, old.Condition);
        // As the engine: the backend may have grown (an expansion while served), never shrunk.
        Assert.True(backend.Info.SizeBytes >= old.SizeBytes, $"adopting a {old.SizeBytes}-byte device over a {backend.Info.SizeBytes}-byte volume");
        var device = new FakeDevice(id, old.SizeBytes) { Adopted = true, Stopped = () => Records.Remove(id) };
        Devices[id] = device;
        return Task.FromResult<IServedDevice>(device);
    }

    public DeviceCondition Inspect(int id) => Devices.TryGetValue(id, out var d) ? d.Condition : DeviceCondition.Absent;

    public void ForgetRecord(int id)
    {
        ForgottenRecords.Add(id);
        Records.Remove(id);
    }

    public IReadOnlyCollection<int> DeviceIdsRecordedThisBoot() => Records.ToArray();

    public void Delete(int id)
    {
        Devices[id].Condition = DeviceCondition.Absent;
        Records.Remove(id);
    }

    /// <summary>The serving process died: every live device waits for the next one.</summary>
    public void Crash()
    {
        foreach (var device in Devices.Values.Where(d => d.Condition == DeviceCondition.LiveWithServer))
        {
            device.Condition = DeviceCondition.Quiesced;
        }
    }
}

public sealed class FakeDevice(int id, long sizeBytes) : IServedDevice
{
    private readonly TaskCompletionSource _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public int Id { get; } = id;

    public string Path => $"/dev/ublkb{Id}";

    public long SizeBytes { get; private set; } = sizeBytes;

    public Task Completion => _completion.Task;

    public long BackendErrors { get; set; }

    public bool NodeExists => Condition != DeviceCondition.Absent;

    public bool Adopted { get; init; }

    /// <summary>Called by <see cref="StopAsync"/>, as the engine deletes its record when it deletes a device.</summary>
    public Action? Stopped { get; init; }

    public DeviceCondition Condition { get; set; } = DeviceCondition.LiveWithServer;

    public Task GrowAsync(long sizeBytes, CancellationToken cancellationToken)
    {
        Assert.True(sizeBytes > SizeBytes, $"grow from {SizeBytes} to {sizeBytes}");
        SizeBytes = sizeBytes;
        return Task.CompletedTask;
    }

    public Task StopAsync()
    {
        Condition = DeviceCondition.Absent;
        Stopped?.Invoke();
        _completion.TrySetResult();
        return Task.CompletedTask;
    }

    public Task ReleaseAsync()
    {
        Condition = DeviceCondition.Quiesced;
        _completion.TrySetResult();
        return Task.CompletedTask;
    }

    public void Fail() => _completion.TrySetException(new IOException("queue 0 failed"));
}

/// <summary>Volumes in memory by store volume ID; an optional gate holds opens (to test concurrency).</summary>
public sealed class FakeOpener : IVolumeOpener
{
    public Dictionary<string, long> Sizes { get; } = new() { ["vol1"] = 64 << 20, ["vol2"] = 32 << 20 };

    public List<(string VolumeId, IReadOnlyDictionary<string, string> Secrets, bool ReadOnly)> Opens { get; } = [];

    public TaskCompletionSource? Gate { get; set; }

    /// <summary>When set, volumes open from this (real) store instead of memory, as the production opener does.</summary>
    public Func<IVolumeStore>? Store { get; set; }

    public int OpenCount => Opens.Count;

    public async Task<OpenedVolume> OpenAsync(VolumeContext context, IReadOnlyDictionary<string, string> secrets, string storeVolumeId, bool readOnly, CancellationToken cancellationToken)
    {
        if (Gate is { } gate)
        {
            await gate.Task;
        }

        if (Store is { } open)
        {
            var store = open();
            Opens.Add((storeVolumeId, secrets, readOnly));
            return new OpenedVolume(store, await store.OpenVolumeAsync(storeVolumeId, readOnly ? VolumeAccess.ReadOnly : VolumeAccess.ReadWrite, cancellationToken));
        }

        if (!Sizes.TryGetValue(storeVolumeId, out var size))
        {
            throw new StoreNotFoundException(StoreObjectKind.Volume, storeVolumeId);
        }

        Opens.Add((storeVolumeId, secrets, readOnly));
        return new OpenedVolume(null, new MemoryBackend(size));
    }
}
