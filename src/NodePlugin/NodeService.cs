using Csi.V1;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using UblkCsi.NodePlugin.Host;
using UblkCsi.NodePlugin.State;
using UblkCsi.NodePlugin.Volumes;
using UblkCsi.Stores;

namespace UblkCsi.NodePlugin;

/// <summary>
/// csi.v1.Node. Every request is validated before anything is touched and answered with the status
/// code the CSI spec names; calls on one volume are serialised (a concurrent one gets ABORTED); the
/// work itself lives in <see cref="VolumeStager"/>, <see cref="VolumePublisher"/> and
/// <see cref="VolumeInspector"/>. Volume calls wait until the devices of a previous plugin process are
/// adopted, so they never race the adoption.
/// </summary>
public sealed partial class NodeService : Node.NodeBase
{
    private static readonly NodeGetCapabilitiesResponse Capabilities = BuildCapabilities();

    private readonly NodeGetInfoResponse _info;
    private readonly VolumeStager _stager;
    private readonly VolumePublisher _publisher;
    private readonly VolumeInspector _inspector;
    private readonly VolumeLocks _locks;
    private readonly NodePaths _paths;
    private readonly Task _adopted;
    private readonly ILogger _logger;

    /// <summary>Creates the service.</summary>
    /// <param name="identity">Node id, driver name and volume limit.</param>
    /// <param name="stager">Stage, unstage.</param>
    /// <param name="publisher">Publish, unpublish.</param>
    /// <param name="inspector">Stats, expand.</param>
    /// <param name="locks">Per-volume serialisation.</param>
    /// <param name="paths">Validation of kubelet's paths.</param>
    /// <param name="adopted">Completes when the startup adoption has finished.</param>
    /// <param name="logger">Where failures are logged.</param>
    public NodeService(NodeIdentity identity, VolumeStager stager, VolumePublisher publisher, VolumeInspector inspector, VolumeLocks locks, NodePaths paths, Task adopted, ILogger<NodeService> logger)
    {
        _info = new NodeGetInfoResponse
        {
            NodeId = identity.NodeId,
            MaxVolumesPerNode = identity.MaxVolumesPerNode,
            AccessibleTopology = new Topology { Segments = { [identity.TopologyKey] = identity.NodeId } },
        };
        _stager = stager;
        _publisher = publisher;
        _inspector = inspector;
        _locks = locks;
        _paths = paths;
        _adopted = adopted;
        _logger = logger;
    }

    /// <inheritdoc />
    public override Task<NodeGetCapabilitiesResponse> NodeGetCapabilities(NodeGetCapabilitiesRequest request, ServerCallContext context) =>
        Task.FromResult(Capabilities);

    /// <inheritdoc />
    public override Task<NodeGetInfoResponse> NodeGetInfo(NodeGetInfoRequest request, ServerCallContext context) => Task.FromResult(_info);

    /// <inheritdoc />
    public override async Task<NodeStageVolumeResponse> NodeStageVolume(NodeStageVolumeRequest request, ServerCallContext context)
    {
        Require(request.VolumeId, "volume_id");
        Require(request.StagingTargetPath, "staging_target_path");
        var capability = RequireCapability(request.VolumeCapability);
        CheckPath("staging_target_path", request.StagingTargetPath);
        var (access, fsType, flags, group, readOnly) = ReadCapability(capability);
        var id = ParseVolumeId(request.VolumeId);
        if (!VolumeContext.TryRead(request.VolumeContext, out var volumeContext, out var problem))
        {
            throw Invalid(problem);
        }

        var stage = new StageRequest(request.VolumeId, id, volumeContext, request.StagingTargetPath, access, fsType, flags, group, readOnly);
        await RunAsync("NodeStageVolume", request.VolumeId, () => _stager.StageAsync(stage, request.Secrets)).ConfigureAwait(false);
        return new NodeStageVolumeResponse();
    }

    /// <inheritdoc />
    public override async Task<NodeUnstageVolumeResponse> NodeUnstageVolume(NodeUnstageVolumeRequest request, ServerCallContext context)
    {
        Require(request.VolumeId, "volume_id");
        Require(request.StagingTargetPath, "staging_target_path");
        CheckPath("staging_target_path", request.StagingTargetPath);
        await RunAsync("NodeUnstageVolume", request.VolumeId, () => _stager.UnstageAsync(request.VolumeId, request.StagingTargetPath)).ConfigureAwait(false);
        return new NodeUnstageVolumeResponse();
    }

    /// <inheritdoc />
    public override async Task<NodePublishVolumeResponse> NodePublishVolume(NodePublishVolumeRequest request, ServerCallContext context)
    {
        Require(request.VolumeId, "volume_id");
        Require(request.TargetPath, "target_path");
        var capability = RequireCapability(request.VolumeCapability);
        if (string.IsNullOrEmpty(request.StagingTargetPath))
        {
            // The spec's code for a plugin with STAGE_UNSTAGE_VOLUME called without a staging path.
            throw new RpcException(new Status(StatusCode.FailedPrecondition, "staging_target_path is not set: this plugin stages volumes (STAGE_UNSTAGE_VOLUME), so NodeStageVolume must come first"));
        }

        CheckPath("target_path", request.TargetPath);
        CheckPath("staging_target_path", request.StagingTargetPath);
        var (access, _, _, _, readOnlyMode) = ReadCapability(capability);
        var publish = new PublishRequest(request.VolumeId, request.StagingTargetPath, request.TargetPath, access, request.Readonly || readOnlyMode);
        await RunAsync("NodePublishVolume", request.VolumeId, () =>
        {
            _publisher.Publish(publish);
            return Task.CompletedTask;
        }).ConfigureAwait(false);
        return new NodePublishVolumeResponse();
    }

    /// <inheritdoc />
    public override async Task<NodeUnpublishVolumeResponse> NodeUnpublishVolume(NodeUnpublishVolumeRequest request, ServerCallContext context)
    {
        Require(request.VolumeId, "volume_id");
        Require(request.TargetPath, "target_path");
        CheckPath("target_path", request.TargetPath);
        await RunAsync("NodeUnpublishVolume", request.VolumeId, () =>
        {
            _publisher.Unpublish(request.VolumeId, request.TargetPath);
            return Task.CompletedTask;
        }).ConfigureAwait(false);
        return new NodeUnpublishVolumeResponse();
    }

    /// <inheritdoc />
    public override async Task<NodeGetVolumeStatsResponse> NodeGetVolumeStats(NodeGetVolumeStatsRequest request, ServerCallContext context)
    {
        Require(request.VolumeId, "volume_id");
        Require(request.VolumePath, "volume_path");
        await _adopted.ConfigureAwait(false);

        // No volume lock: kubelet polls stats, and a read must not turn a stage into ABORTED.
        var stats = Guard("NodeGetVolumeStats", request.VolumeId, () => _inspector.GetStatistics(request.VolumeId, request.VolumePath));
        var response = new NodeGetVolumeStatsResponse
        {
            VolumeCondition = new Csi.V1.VolumeCondition { Abnormal = stats.Problem is not null, Message = stats.Problem ?? "the volume is served and its store answers" },
        };
        response.Usage.Add(new VolumeUsage
        {
            Unit = VolumeUsage.Types.Unit.Bytes,
            Total = stats.TotalBytes,
            Available = stats.AvailableBytes ?? 0,
            Used = stats.UsedBytes ?? 0,
        });
        if (stats.TotalInodes is { } inodes)
        {
            response.Usage.Add(new VolumeUsage
            {
                Unit = VolumeUsage.Types.Unit.Inodes,
                Total = inodes,
                Available = stats.FreeInodes ?? 0,
                Used = stats.UsedInodes ?? 0,
            });
        }

        return response;
    }

    /// <inheritdoc />
    public override async Task<NodeExpandVolumeResponse> NodeExpandVolume(NodeExpandVolumeRequest request, ServerCallContext context)
    {
        Require(request.VolumeId, "volume_id");
        Require(request.VolumePath, "volume_path");
        var required = request.CapacityRange?.RequiredBytes ?? 0;
        var limit = request.CapacityRange?.LimitBytes ?? 0;
        if (required < 0 || limit < 0 || (limit > 0 && required > limit))
        {
            throw Invalid($"capacity_range is invalid (required_bytes {required}, limit_bytes {limit})");
        }

        long size = 0;
        await RunAsync("NodeExpandVolume", request.VolumeId, async () =>
            size = await _inspector.ExpandAsync(request.VolumeId, request.VolumePath, required, context.CancellationToken).ConfigureAwait(false)).ConfigureAwait(false);
        return new NodeExpandVolumeResponse { CapacityBytes = size };
    }

    private async Task RunAsync(string method, string volumeId, Func<Task> operation)
    {
        using var held = _locks.TryAcquire(volumeId)
            ?? throw new RpcException(new Status(StatusCode.Aborted, $"an operation on volume {volumeId} is already in progress; retry later"));
        await _adopted.ConfigureAwait(false);
        try
        {
            await operation().ConfigureAwait(false);
        }
        catch (Exception e) when (e is not RpcException)
        {
            throw ToRpcException(method, volumeId, e);
        }
    }

    private T Guard<T>(string method, string volumeId, Func<T> operation)
    {
        try
        {
            return operation();
        }
        catch (Exception e) when (e is not RpcException)
        {
            throw ToRpcException(method, volumeId, e);
        }
    }

    private RpcException ToRpcException(string method, string volumeId, Exception e)
    {
        var (code, message) = e switch
        {
            NodeOperationException n => (n.Code, n.Message),
            StoreException s => (StoreStatusCodes.ToStatusCode(s.Code), s.Message),
            _ => (StatusCode.Internal, $"{method} of volume {volumeId} failed: {e.Message}"),
        };
        if (code == StatusCode.Internal)
        {
            CallFailed(_logger, method, volumeId, e.Message, e);
        }

        return new RpcException(new Status(code, message));
    }

    private void CheckPath(string field, string path)
    {
        if (_paths.Check(field, path) is { } problem)
        {
            throw Invalid(problem);
        }
    }

    private static void Require(string value, string field)
    {
        if (string.IsNullOrEmpty(value))
        {
            throw Invalid($"{field} is required");
        }
    }

    private static VolumeCapability RequireCapability(VolumeCapability? capability)
    {
        if (capability is null)
        {
            throw Invalid("volume_capability is required");
        }

        if (capability.AccessTypeCase == VolumeCapability.AccessTypeOneofCase.None)
        {
            throw Invalid("volume_capability needs an access type (mount or block)");
        }

        return capability;
    }

    // A volume_id this driver could not have issued names no volume: NOT_FOUND, not INVALID_ARGUMENT.
    private static VolumeHandle ParseVolumeId(string volumeId) =>
        VolumeHandle.TryParse(volumeId, out var handle)
            ? handle
            : throw new RpcException(new Status(StatusCode.NotFound, $"no such volume: '{volumeId}' is not of the form <store locator>/<volume id>"));

    private static (StagedAccess Access, string FsType, IReadOnlyList<string> Flags, string? Group, bool ReadOnly) ReadCapability(VolumeCapability capability)
    {
        var mode = capability.AccessMode?.Mode ?? VolumeCapability.Types.AccessMode.Types.Mode.Unknown;
        var readOnly = mode switch
        {
            VolumeCapability.Types.AccessMode.Types.Mode.SingleNodeWriter
                or VolumeCapability.Types.AccessMode.Types.Mode.SingleNodeSingleWriter
                or VolumeCapability.Types.AccessMode.Types.Mode.SingleNodeMultiWriter => false,
            VolumeCapability.Types.AccessMode.Types.Mode.SingleNodeReaderOnly
                or VolumeCapability.Types.AccessMode.Types.Mode.MultiNodeReaderOnly => true,
            _ => throw Invalid($"access mode {mode} is not supported: a ublk volume is written from one node (single-node modes) or read from many (reader-only modes)"),
        };

        if (capability.AccessTypeCase == VolumeCapability.AccessTypeOneofCase.Block)
        {
            return (StagedAccess.Block, string.Empty, [], null, readOnly);
        }

        var mount = capability.Mount;
        var fsType = string.IsNullOrEmpty(mount.FsType) ? VolumeStager.DefaultFsType : mount.FsType;
        if (!VolumeStager.SupportedFsTypes.Contains(fsType))
        {
            throw Invalid($"fs_type '{mount.FsType}' is not supported; allowed: {string.Join(", ", VolumeStager.SupportedFsTypes)}");
        }

        foreach (var flag in mount.MountFlags)
        {
            if (flag.Length == 0 || flag.Any(c => char.IsWhiteSpace(c) || char.IsControl(c)))
            {
                throw Invalid($"mount flag '{flag}' is empty or contains whitespace or control characters");
            }
        }

        string? group = null;
        if (!string.IsNullOrEmpty(mount.VolumeMountGroup))
        {
            if (!uint.TryParse(mount.VolumeMountGroup, System.Globalization.NumberStyles.None, null, out _))
            {
                throw Invalid($"volume_mount_group '{mount.VolumeMountGroup}' must be a numeric group ID");
            }

            group = mount.VolumeMountGroup;
        }

        return (StagedAccess.Mount, fsType, mount.MountFlags.ToArray(), group, readOnly);
    }

    private static RpcException Invalid(string message) => new(new Status(StatusCode.InvalidArgument, message));

    private static NodeGetCapabilitiesResponse BuildCapabilities()
    {
        var response = new NodeGetCapabilitiesResponse();
        foreach (var type in new[]
        {
            NodeServiceCapability.Types.RPC.Types.Type.StageUnstageVolume,
            NodeServiceCapability.Types.RPC.Types.Type.GetVolumeStats,
            NodeServiceCapability.Types.RPC.Types.Type.VolumeCondition,
            NodeServiceCapability.Types.RPC.Types.Type.ExpandVolume,
            NodeServiceCapability.Types.RPC.Types.Type.SingleNodeMultiWriter,
            NodeServiceCapability.Types.RPC.Types.Type.VolumeMountGroup,
        })
        {
            response.Capabilities.Add(new NodeServiceCapability { Rpc = new NodeServiceCapability.Types.RPC { Type = type } });
        }

        return response;
    }

    [LoggerMessage(EventId = 240, Level = LogLevel.Error, Message = "{Method} of volume {VolumeId} failed: {Reason}")]
    private static partial void CallFailed(ILogger logger, string method, string volumeId, string reason, Exception exception);
}

/// <summary>What NodeGetInfo reports.</summary>
/// <param name="NodeId">This node's ID (the Kubernetes node name).</param>
/// <param name="DriverName">The CSI driver name.</param>
/// <param name="MaxVolumesPerNode">The most volumes the scheduler may place here; 0 leaves it to the CO.</param>
public sealed record NodeIdentity(string NodeId, string DriverName, long MaxVolumesPerNode)
{
    /// <summary>The topology key naming this node: <c>topology.&lt;driver&gt;/node</c>.</summary>
    public string TopologyKey => Protocol.CsiTopology.NodeKey(DriverName);
}
