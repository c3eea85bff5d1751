using Csi.V1;
using Google.Protobuf;
using Google.Protobuf.Reflection;
using Google.Protobuf.WellKnownTypes;

namespace UblkCsi.Protocol.Tests;

/// <summary>
/// Facts of the CSI v1.12.0 contract, read back through the generated descriptors. kubelet and
/// the sidecars only interoperate if names, numbers and types are exactly the upstream ones.
/// </summary>
public sealed class CsiContractTests
{
    private static FileDescriptor File => CsiReflection.Descriptor;

    [Fact]
    public void FileDeclaresPackageImportsAndGoPackage()
    {
        Assert.Equal("csi.v1", File.Package);
        Assert.Equal(
            ["google/protobuf/descriptor.proto", "google/protobuf/timestamp.proto", "google/protobuf/wrappers.proto"],
            File.Dependencies.Select(d => d.Name));
        Assert.Equal("github.com/container-storage-interface/spec/lib/go/csi", File.GetOptions().GoPackage);
        Assert.Equal("proto3", File.ToProto().Syntax);
    }

    [Fact]
    public void ServicesAndTheirMethodsAreTheSpecsInOrder()
    {
        Assert.Equal(["Identity", "Controller", "GroupController", "SnapshotMetadata", "Node"], File.Services.Select(s => s.Name));
        Assert.Equal(["GetPluginInfo", "GetPluginCapabilities", "Probe"], Methods(CsiServices.Identity));
        Assert.Equal(
            [
                "CreateVolume", "DeleteVolume", "ControllerPublishVolume", "ControllerUnpublishVolume",
                "ValidateVolumeCapabilities", "ListVolumes", "GetCapacity", "ControllerGetCapabilities",
                "CreateSnapshot", "DeleteSnapshot", "ListSnapshots", "GetSnapshot", "ControllerExpandVolume",
                "ControllerGetVolume", "ControllerModifyVolume",
            ],
            Methods(CsiServices.Controller));
        Assert.Equal(
            ["GroupControllerGetCapabilities", "CreateVolumeGroupSnapshot", "DeleteVolumeGroupSnapshot", "GetVolumeGroupSnapshot"],
            Methods(CsiServices.GroupController));
        Assert.Equal(["GetMetadataAllocated", "GetMetadataDelta"], Methods(CsiServices.SnapshotMetadata));
        Assert.Equal(
            [
                "NodeStageVolume", "NodeUnstageVolume", "NodePublishVolume", "NodeUnpublishVolume",
                "NodeGetVolumeStats", "NodeExpandVolume", "NodeGetCapabilities", "NodeGetInfo",
            ],
            Methods(CsiServices.Node));
    }

    [Fact]
    public void MethodsUseTheirNamedMessagesAndOnlySnapshotMetadataStreams()
    {
        foreach (var method in File.Services.SelectMany(s => s.Methods))
        {
            Assert.Equal(method.Name + "Request", method.InputType.Name);
            Assert.Equal(method.Name + "Response", method.OutputType.Name);
            Assert.False(method.IsClientStreaming, method.FullName);
            Assert.Equal(method.Service.Name == "SnapshotMetadata", method.IsServerStreaming);
        }
    }

    [Theory]
    [InlineData("CreateVolumeRequest", "name:1 capacity_range:2 volume_capabilities:3 parameters:4 secrets:5 volume_content_source:6 accessibility_requirements:7 mutable_parameters:8")]
    [InlineData("Volume", "capacity_bytes:1 volume_id:2 volume_context:3 content_source:4 accessible_topology:5")]
    [InlineData("VolumeCapability", "block:1 mount:2 access_mode:3")]
    [InlineData("VolumeCapability.MountVolume", "fs_type:1 mount_flags:2 volume_mount_group:3")]
    [InlineData("ControllerPublishVolumeRequest", "volume_id:1 node_id:2 volume_capability:3 readonly:4 secrets:5 volume_context:6")]
    [InlineData("ControllerUnpublishVolumeRequest", "volume_id:1 node_id:2 secrets:3")]
    [InlineData("ValidateVolumeCapabilitiesRequest", "volume_id:1 volume_context:2 volume_capabilities:3 parameters:4 secrets:5 mutable_parameters:6")]
    [InlineData("ListVolumesResponse.Entry", "volume:1 status:2")]
    [InlineData("GetCapacityRequest", "volume_capabilities:1 parameters:2 accessible_topology:3")]
    [InlineData("GetCapacityResponse", "available_capacity:1 maximum_volume_size:2 minimum_volume_size:3")]
    [InlineData("Snapshot", "size_bytes:1 snapshot_id:2 source_volume_id:3 creation_time:4 ready_to_use:5 group_snapshot_id:6")]
    [InlineData("ListSnapshotsRequest", "max_entries:1 starting_token:2 source_volume_id:3 snapshot_id:4 secrets:5")]
    [InlineData("ControllerExpandVolumeRequest", "volume_id:1 capacity_range:2 secrets:3 volume_capability:4")]
    [InlineData("ControllerModifyVolumeRequest", "volume_id:1 secrets:2 mutable_parameters:3")]
    [InlineData("NodeStageVolumeRequest", "volume_id:1 publish_context:2 staging_target_path:3 volume_capability:4 secrets:5 volume_context:6")]
    [InlineData("NodePublishVolumeRequest", "volume_id:1 publish_context:2 staging_target_path:3 target_path:4 volume_capability:5 readonly:6 secrets:7 volume_context:8")]
    [InlineData("NodeGetVolumeStatsRequest", "volume_id:1 volume_path:2 staging_target_path:3")]
    [InlineData("NodeExpandVolumeRequest", "volume_id:1 volume_path:2 capacity_range:3 staging_target_path:4 volume_capability:5 secrets:6")]
    [InlineData("NodeGetInfoResponse", "node_id:1 max_volumes_per_node:2 accessible_topology:3")]
    [InlineData("VolumeUsage", "available:1 total:2 used:3 unit:4")]
    [InlineData("GetMetadataDeltaRequest", "base_snapshot_id:1 target_snapshot_id:2 starting_offset:3 max_results:4 secrets:5")]
    [InlineData("VolumeGroupSnapshot", "group_snapshot_id:1 snapshots:2 creation_time:3 ready_to_use:4")]
    public void FieldNumbersMatchTheSpec(string message, string fields)
    {
        var descriptor = FindMessage(message);

        Assert.Equal(fields, string.Join(' ', descriptor.Fields.InFieldNumberOrder().Select(f => $"{f.Name}:{f.FieldNumber}")));
    }

    [Fact]
    public void ScalarAndWellKnownTypesMatchTheSpec()
    {
        Assert.Equal(FieldType.Int32, ListVolumesRequest.Descriptor.FindFieldByName("max_entries").FieldType);
        Assert.Equal(FieldType.Int32, GetMetadataAllocatedRequest.Descriptor.FindFieldByName("max_results").FieldType);
        Assert.Equal(FieldType.Int64, CapacityRange.Descriptor.FindFieldByName("required_bytes").FieldType);
        Assert.Equal(FieldType.Int64, NodeGetInfoResponse.Descriptor.FindFieldByName("max_volumes_per_node").FieldType);
        Assert.Equal(BoolValue.Descriptor, ProbeResponse.Descriptor.FindFieldByName("ready").MessageType);
        Assert.Equal(Int64Value.Descriptor, GetCapacityResponse.Descriptor.FindFieldByName("maximum_volume_size").MessageType);
        Assert.Equal(Timestamp.Descriptor, Snapshot.Descriptor.FindFieldByName("creation_time").MessageType);
        Assert.True(CreateVolumeRequest.Descriptor.FindFieldByName("parameters").IsMap);
        Assert.True(Volume.Descriptor.FindFieldByName("accessible_topology").IsRepeated);
        Assert.Equal(["access_type"], VolumeCapability.Descriptor.Oneofs.Select(o => o.Name));
    }

    [Fact]
    public void EveryAndOnlySecretsFieldsCarryCsiSecret()
    {
        var marked = AllMessages()
            .SelectMany(m => m.Fields.InDeclarationOrder())
            .Where(f => f.GetOptions()?.GetExtension(CsiExtensions.CsiSecret) == true)
            .Select(f => f.ContainingType.Name)
            .Order(StringComparer.Ordinal)
            .ToList();
        var secretsFields = AllMessages()
            .SelectMany(m => m.Fields.InDeclarationOrder())
            .Where(f => f.Name == "secrets")
            .Select(f => f.ContainingType.Name)
            .Order(StringComparer.Ordinal)
            .ToList();

        Assert.Equal(
            [
                "ControllerExpandVolumeRequest", "ControllerModifyVolumeRequest", "ControllerPublishVolumeRequest",
                "ControllerUnpublishVolumeRequest", "CreateSnapshotRequest", "CreateVolumeGroupSnapshotRequest",
                "CreateVolumeRequest", "DeleteSnapshotRequest", "DeleteVolumeGroupSnapshotRequest", "DeleteVolumeRequest",
                "GetMetadataAllocatedRequest", "GetMetadataDeltaRequest", "GetSnapshotRequest", "GetVolumeGroupSnapshotRequest",
                "ListSnapshotsRequest", "NodeExpandVolumeRequest", "NodePublishVolumeRequest", "NodeStageVolumeRequest",
                "ValidateVolumeCapabilitiesRequest",
            ],
            marked);
        Assert.Equal(secretsFields, marked);
    }

    [Fact]
    public void OptionExtensionsHaveTheSpecNumbersAndTargets()
    {
        var extensions = File.Extensions.UnorderedExtensions.ToDictionary(e => e.Name);

        Assert.Equal(
            ["alpha_enum", "alpha_enum_value", "alpha_field", "alpha_message", "alpha_method", "alpha_service", "csi_secret"],
            extensions.Keys.Order(StringComparer.Ordinal));
        Assert.Equal(1059, extensions["csi_secret"].FieldNumber);
        Assert.Equal("google.protobuf.FieldOptions", extensions["csi_secret"].ExtendeeType.FullName);
        Assert.Equal("google.protobuf.EnumOptions", extensions["alpha_enum"].ExtendeeType.FullName);
        Assert.Equal("google.protobuf.EnumValueOptions", extensions["alpha_enum_value"].ExtendeeType.FullName);
        Assert.Equal("google.protobuf.FieldOptions", extensions["alpha_field"].ExtendeeType.FullName);
        Assert.Equal("google.protobuf.MessageOptions", extensions["alpha_message"].ExtendeeType.FullName);
        Assert.Equal("google.protobuf.MethodOptions", extensions["alpha_method"].ExtendeeType.FullName);
        Assert.Equal("google.protobuf.ServiceOptions", extensions["alpha_service"].ExtendeeType.FullName);

        // Upstream numbers every alpha marker 1060; they extend different messages, so they cannot collide.
        Assert.All(extensions.Values.Where(e => e.Name.StartsWith("alpha_", StringComparison.Ordinal)), e => Assert.Equal(1060, e.FieldNumber));
        Assert.All(extensions.Values, e => Assert.Equal(FieldType.Bool, e.FieldType));
    }

    [Fact]
    public void AlphaMarkersSitWhereTheSpecPutsThem()
    {
        Assert.True(CsiServices.SnapshotMetadata.GetOptions().GetExtension(CsiExtensions.AlphaService));
        Assert.False(CsiServices.GroupController.GetOptions()?.GetExtension(CsiExtensions.AlphaService) ?? false);
        Assert.Equal(
            ["ControllerGetVolume", "GetSnapshot"],
            File.Services.SelectMany(s => s.Methods)
                .Where(m => m.GetOptions()?.GetExtension(CsiExtensions.AlphaMethod) == true)
                .Select(m => m.Name)
                .Order(StringComparer.Ordinal));
        Assert.Equal(
            ["ControllerGetVolumeRequest", "ControllerGetVolumeResponse", "GetSnapshotRequest", "GetSnapshotResponse", "VolumeCondition"],
            AllMessages().Where(m => m.GetOptions()?.GetExtension(CsiExtensions.AlphaMessage) == true).Select(m => m.Name).Order(StringComparer.Ordinal));
        Assert.Equal(
            ["GetCapacityResponse.minimum_volume_size", "ListVolumesResponse.VolumeStatus.volume_condition", "NodeExpandVolumeRequest.secrets", "NodeGetVolumeStatsResponse.volume_condition"],
            AllMessages().SelectMany(m => m.Fields.InDeclarationOrder())
                .Where(f => f.GetOptions()?.GetExtension(CsiExtensions.AlphaField) == true)
                .Select(f => f.FullName["csi.v1.".Length..])
                .Order(StringComparer.Ordinal));
    }

    [Fact]
    public void CapabilityEnumsHaveTheSpecValues()
    {
        Assert.Equal(
            "UNKNOWN=0 CONTROLLER_SERVICE=1 VOLUME_ACCESSIBILITY_CONSTRAINTS=2 GROUP_CONTROLLER_SERVICE=3 SNAPSHOT_METADATA_SERVICE=4",
            Values(PluginCapability.Types.Service.Descriptor.EnumTypes[0]));
        Assert.Equal("UNKNOWN=0 ONLINE=1 OFFLINE=2", Values(PluginCapability.Types.VolumeExpansion.Descriptor.EnumTypes[0]));
        Assert.Equal(
            "UNKNOWN=0 CREATE_DELETE_VOLUME=1 PUBLISH_UNPUBLISH_VOLUME=2 LIST_VOLUMES=3 GET_CAPACITY=4 CREATE_DELETE_SNAPSHOT=5 " +
            "LIST_SNAPSHOTS=6 CLONE_VOLUME=7 PUBLISH_READONLY=8 EXPAND_VOLUME=9 LIST_VOLUMES_PUBLISHED_NODES=10 VOLUME_CONDITION=11 " +
            "GET_VOLUME=12 SINGLE_NODE_MULTI_WRITER=13 MODIFY_VOLUME=14 GET_SNAPSHOT=15",
            Values(ControllerServiceCapability.Types.RPC.Descriptor.EnumTypes[0]));
        Assert.Equal(
            "UNKNOWN=0 STAGE_UNSTAGE_VOLUME=1 GET_VOLUME_STATS=2 EXPAND_VOLUME=3 VOLUME_CONDITION=4 SINGLE_NODE_MULTI_WRITER=5 VOLUME_MOUNT_GROUP=6",
            Values(NodeServiceCapability.Types.RPC.Descriptor.EnumTypes[0]));
        Assert.Equal("UNKNOWN=0 CREATE_DELETE_GET_VOLUME_GROUP_SNAPSHOT=1", Values(GroupControllerServiceCapability.Types.RPC.Descriptor.EnumTypes[0]));
        Assert.Equal(
            "UNKNOWN=0 SINGLE_NODE_WRITER=1 SINGLE_NODE_READER_ONLY=2 MULTI_NODE_READER_ONLY=3 MULTI_NODE_SINGLE_WRITER=4 " +
            "MULTI_NODE_MULTI_WRITER=5 SINGLE_NODE_SINGLE_WRITER=6 SINGLE_NODE_MULTI_WRITER=7",
            Values(VolumeCapability.Types.AccessMode.Descriptor.EnumTypes[0]));
        Assert.Equal("UNKNOWN=0 BYTES=1 INODES=2", Values(VolumeUsage.Descriptor.EnumTypes[0]));
        Assert.Equal("UNKNOWN=0 FIXED_LENGTH=1 VARIABLE_LENGTH=2", Values(BlockMetadataTypeReflection()));
    }

    [Fact]
    public void HandEncodedNodeStageRequestDecodesIntoTheRightFields()
    {
        // Bytes as any spec-conformant CO would put them on the wire: field 1 volume_id,
        // field 3 staging_target_path, field 5 secrets map entry {key 1, value 2}.
        byte[] wire =
        [
            0x0A, 0x01, (byte)'v',
            0x1A, 0x02, (byte)'/', (byte)'s',
            0x2A, 0x06, 0x0A, 0x01, (byte)'k', 0x12, 0x01, (byte)'x',
        ];

        var request = NodeStageVolumeRequest.Parser.ParseFrom(wire);

        Assert.Equal("v", request.VolumeId);
        Assert.Equal("/s", request.StagingTargetPath);
        Assert.Equal("x", request.Secrets["k"]);
        Assert.Equal(wire, request.ToByteArray());
    }

    private static IEnumerable<MessageDescriptor> AllMessages()
    {
        IEnumerable<MessageDescriptor> Walk(MessageDescriptor m) => m.NestedTypes.SelectMany(Walk).Prepend(m);
        return File.MessageTypes.SelectMany(Walk).Where(m => !m.GetOptions()?.MapEntry ?? true);
    }

    private static MessageDescriptor FindMessage(string dottedName)
    {
        var parts = dottedName.Split('.');
        var descriptor = File.MessageTypes.Single(m => m.Name == parts[0]);
        foreach (var nested in parts.Skip(1))
        {
            descriptor = descriptor.NestedTypes.Single(m => m.Name == nested);
        }

        return descriptor;
    }

    private static IEnumerable<string> Methods(ServiceDescriptor service) => service.Methods.Select(m => m.Name);

    private static string Values(EnumDescriptor descriptor) => string.Join(' ', descriptor.Values.Select(v => $"{v.Name}={v.Number}"));

    private static EnumDescriptor BlockMetadataTypeReflection() => File.EnumTypes.Single(e => e.Name == "BlockMetadataType");
}
