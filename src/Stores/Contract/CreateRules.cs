namespace UblkCsi.Stores;

/// <summary>The size and idempotency rules every store applies the same way.</summary>
public static class CreateRules
{
    /// <summary>A positive size up to the maximum, rounded up to <see cref="StoreLimits.SizeGranularity"/>.</summary>
    public static long ValidateSize(long sizeBytes, string parameterName)
    {
        if (sizeBytes <= 0)
        {
            throw new StoreParameterException(parameterName, $"must be a positive number of bytes, got {sizeBytes}");
        }

        if (sizeBytes > StoreLimits.MaximumVolumeSizeBytes)
        {
            throw new StoreOutOfRangeException($"size {sizeBytes} exceeds the maximum volume size {StoreLimits.MaximumVolumeSizeBytes}");
        }

        return StoreLimits.RoundUpSize(sizeBytes);
    }

    /// <summary>The size of a new volume: 0 with a source means the source's size; never below the source.</summary>
    public static long ValidateCreateSize(long requested, VolumeSource? source, long sourceSize)
    {
        if (source is not null && requested == 0)
        {
            return sourceSize;
        }

        var size = ValidateSize(requested, "sizeBytes");
        if (source is not null && size < sourceSize)
        {
            throw new StoreOutOfRangeException(
                $"size {size} is smaller than the source {source.Kind.ToString().ToLowerInvariant()} '{source.Id}' ({sourceSize} bytes)");
        }

        return size;
    }

    /// <summary>Idempotent create: the existing volume must match name, size and source.</summary>
    public static void EnsureSameVolume(VolumeInfo existing, string name, long size, VolumeSource? source)
    {
        if (existing.Name != name)
        {
            throw new StoreAlreadyExistsException(StoreObjectKind.Volume, name, $"an ID '{existing.Id}' already used by the name '{existing.Name}'");
        }

        if (existing.SizeBytes != size)
        {
            throw new StoreAlreadyExistsException(StoreObjectKind.Volume, name, $"size {existing.SizeBytes} bytes (requested {size})");
        }

        if (existing.Source != source)
        {
            var was = existing.Source is null ? "no source" : $"source {existing.Source.Kind.ToString().ToLowerInvariant()} '{existing.Source.Id}'";
            throw new StoreAlreadyExistsException(StoreObjectKind.Volume, name, was);
        }
    }

    /// <summary>Idempotent snapshot: the existing snapshot must match name and source.</summary>
    public static void EnsureSameSnapshot(SnapshotInfo existing, string name, string sourceVolumeId)
    {
        if (existing.Name != name)
        {
            throw new StoreAlreadyExistsException(StoreObjectKind.Snapshot, name, $"an ID '{existing.Id}' already used by the name '{existing.Name}'");
        }

        if (existing.SourceVolumeId != sourceVolumeId)
        {
            throw new StoreAlreadyExistsException(StoreObjectKind.Snapshot, name, $"source volume '{existing.SourceVolumeId}'");
        }
    }
}
