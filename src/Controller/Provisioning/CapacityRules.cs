using Csi.V1;
using UblkCsi.Stores;

namespace UblkCsi.Controller.Provisioning;

/// <summary>
/// CSI capacity ranges: the size a new volume gets, whether an existing one satisfies a range, and the
/// size an expansion asks for. Sizes are multiples of <see cref="StoreLimits.SizeGranularity"/>, so a
/// range that holds no such multiple (or lies above the maximum) is OUT_OF_RANGE.
/// </summary>
public static class CapacityRules
{
    /// <summary>Size of a volume created without a capacity range and without a source.</summary>
    public const long DefaultVolumeSize = 1L << 30;

    /// <summary>The size for a new volume; <paramref name="sourceSize"/> is the floor for restores and clones.</summary>
    public static long ChooseSize(CapacityRange? range, long? sourceSize)
    {
        var (required, limit) = Validate(range);
        var floor = sourceSize ?? 0;
        long wanted;
        if (required == 0 && limit == 0)
        {
            wanted = sourceSize ?? DefaultVolumeSize;
        }
        else if (required == 0)
        {
            wanted = Math.Max(floor, Math.Min(sourceSize ?? DefaultVolumeSize, limit));
        }
        else
        {
            wanted = Math.Max(required, floor);
        }

        var minimum = Math.Max(Math.Max(required, floor), StoreLimits.SizeGranularity);
        var size = StoreLimits.RoundUpSize(Math.Max(wanted, StoreLimits.SizeGranularity));
        if (limit > 0 && size > limit && RoundDown(limit) >= minimum)
        {
            size = RoundDown(limit); // only a limit (or a loose one): the largest multiple under it
        }

        if (limit > 0 && size > limit)
        {
            var why = floor > limit ? $"the source holds {floor} bytes" : $"sizes are multiples of {StoreLimits.SizeGranularity} bytes";
            throw CsiErrors.OutOfRange($"capacity_range limit_bytes {limit} cannot be met: {why} (smallest possible size {size})");
        }

        CheckMaximum(size);
        return size;
    }

    /// <summary>True when an existing volume of <paramref name="sizeBytes"/> satisfies the range.</summary>
    public static bool Satisfies(CapacityRange? range, long sizeBytes)
    {
        var (required, limit) = Validate(range);
        return sizeBytes >= required && (limit == 0 || sizeBytes <= limit);
    }

    /// <summary>The size an expansion asks for (capacity_range is required there).</summary>
    public static long ChooseExpandSize(CapacityRange? range)
    {
        if (range is null)
        {
            throw CsiErrors.InvalidArgument("capacity_range is required");
        }

        var (required, limit) = Validate(range);
        var wanted = required > 0 ? required : limit;
        if (wanted == 0)
        {
            throw CsiErrors.InvalidArgument("capacity_range needs required_bytes or limit_bytes");
        }

        var size = StoreLimits.RoundUpSize(wanted);
        if (limit > 0 && size > limit)
        {
            throw CsiErrors.OutOfRange($"capacity_range limit_bytes {limit} cannot be met: sizes are multiples of {StoreLimits.SizeGranularity} bytes");
        }

        CheckMaximum(size);
        return size;
    }

    private static (long Required, long Limit) Validate(CapacityRange? range)
    {
        var required = range?.RequiredBytes ?? 0;
        var limit = range?.LimitBytes ?? 0;
        if (required < 0 || limit < 0)
        {
            throw CsiErrors.InvalidArgument($"capacity_range must not be negative (required_bytes {required}, limit_bytes {limit})");
        }

        if (limit > 0 && required > limit)
        {
            throw CsiErrors.InvalidArgument($"capacity_range required_bytes {required} exceeds limit_bytes {limit}");
        }

        if (required > StoreLimits.MaximumVolumeSizeBytes)
        {
            throw CsiErrors.OutOfRange($"required_bytes {required} exceeds the maximum volume size {StoreLimits.MaximumVolumeSizeBytes}");
        }

        return (required, limit);
    }

    private static long RoundDown(long bytes) => bytes / StoreLimits.SizeGranularity * StoreLimits.SizeGranularity;

    private static void CheckMaximum(long size)
    {
        if (size > StoreLimits.MaximumVolumeSizeBytes)
        {
            throw CsiErrors.OutOfRange($"size {size} exceeds the maximum volume size {StoreLimits.MaximumVolumeSizeBytes}");
        }
    }
}
