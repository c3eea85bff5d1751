using Google.Protobuf.WellKnownTypes;
using UblkCsi.BlockStore.V1;

namespace UblkCsi.Stores.Rpc;

/// <summary>Converts between the store contract's records and the block-store protocol's messages.</summary>
public static class ProtoConvert
{
    public static BlockStore.V1.VolumePublication ToProto(VolumePublication publication) =>
        new() { NodeId = publication.NodeId, ReadOnly = publication.ReadOnly };

    public static VolumePublication FromProto(BlockStore.V1.VolumePublication publication) =>
        new(publication.NodeId, publication.ReadOnly);

    /// <summary>QoS limits from their parameters; a bad value is a parameter error naming the key.</summary>
    public static Engine.Backends.Qos.QosLimits FromProto(IReadOnlyDictionary<string, string> qosParameters)
    {
        try
        {
            return Engine.Backends.Qos.QosLimits.Parse(qosParameters);
        }
        catch (ArgumentException e)
        {
            throw new StoreParameterException(e.ParamName ?? "qos", e.Message);
        }
    }

    public static Volume ToProto(VolumeInfo info)
    {
        var volume = new Volume
        {
            Id = info.Id,
            Name = info.Name,
            SizeBytes = info.SizeBytes,
            Created = Timestamp.FromDateTimeOffset(info.CreatedUtc),
        };
        if (info.Source is { } source)
        {
            volume.Source = ToProto(source);
        }

        return volume;
    }

    public static VolumeInfo FromProto(Volume volume) =>
        new(volume.Id, volume.Name, volume.SizeBytes, ToTime(volume.Created), volume.Source is null ? null : FromProto(volume.Source, "source"));

    public static Snapshot ToProto(SnapshotInfo info) => new()
    {
        Id = info.Id,
        Name = info.Name,
        SourceVolumeId = info.SourceVolumeId,
        SizeBytes = info.SizeBytes,
        Created = Timestamp.FromDateTimeOffset(info.CreatedUtc),
        ReadyToUse = info.ReadyToUse,
    };

    public static SnapshotInfo FromProto(Snapshot snapshot) =>
        new(snapshot.Id, snapshot.Name, snapshot.SourceVolumeId, snapshot.SizeBytes, ToTime(snapshot.Created), snapshot.ReadyToUse);

    public static BlockStore.V1.VolumeSource ToProto(Stores.VolumeSource source) => new()
    {
        Kind = source.Kind == VolumeSourceKind.Snapshot ? SourceKind.Snapshot : SourceKind.Volume,
        Id = source.Id,
    };

    /// <summary>A source from the wire; an unknown kind is the caller's error, named by <paramref name="parameterName"/>.</summary>
    public static Stores.VolumeSource FromProto(BlockStore.V1.VolumeSource source, string parameterName) => source.Kind switch
    {
        SourceKind.Snapshot => Stores.VolumeSource.FromSnapshot(source.Id),
        SourceKind.Volume => Stores.VolumeSource.FromVolume(source.Id),
        _ => throw new StoreParameterException(parameterName, $"kind must be SOURCE_KIND_SNAPSHOT or SOURCE_KIND_VOLUME, got {source.Kind}"),
    };

    public static GetCapacityResponse ToProto(StoreCapacity capacity)
    {
        var response = new GetCapacityResponse
        {
            MaximumVolumeSizeBytes = capacity.MaximumVolumeSizeBytes,
            MinimumVolumeSizeBytes = capacity.MinimumVolumeSizeBytes,
        };
        if (capacity.AvailableBytes is { } available)
        {
            response.AvailableBytes = available;
        }

        return response;
    }

    public static StoreCapacity FromProto(GetCapacityResponse response) =>
        new(response.HasAvailableBytes ? response.AvailableBytes : null, response.MaximumVolumeSizeBytes, response.MinimumVolumeSizeBytes);

    private static DateTimeOffset ToTime(Timestamp? timestamp) =>
        timestamp is null ? DateTimeOffset.UnixEpoch : timestamp.ToDateTimeOffset();
}
