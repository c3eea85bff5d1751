using UblkCsi.Engine.Abi;

namespace UblkCsi.Engine;

/// <summary>
/// The block-layer parameters of a device (SET_PARAMS / GET_PARAMS), in bytes rather than the
/// kernel's shifts and sectors.
/// </summary>
public sealed record UblkDeviceParameters(
    long SizeBytes,
    int LogicalBlockSize,
    int PhysicalBlockSize,
    int MaxIoBytes,
    bool VolatileCache,
    bool Fua,
    bool ReadOnly,
    int DiscardGranularity,
    long MaxDiscardBytes,
    long MaxWriteZeroesBytes)
{
    /// <summary>Block device major:minor, known once the device is started (GET_PARAMS only).</summary>
    public (uint Major, uint Minor) DiskDevice { get; init; }

    /// <summary>Derives the parameters a device serving <paramref name="info"/> should announce.</summary>
    public static UblkDeviceParameters ForBackend(BlockBackendInfo info, int maxIoBytes)
    {
        var features = info.Features;
        var discard = (features & BlockBackendFeatures.Discard) != 0;
        var writeZeroes = (features & BlockBackendFeatures.WriteZeroes) != 0;
        // The kernel's limits are 32-bit sector counts; ask for the largest whole multiple of the granularity.
        var granularity = info.DiscardGranularity > 0 ? info.DiscardGranularity : info.LogicalBlockSize;
        var maxRange = (long)(uint.MaxValue >> 9) << 9;
        maxRange -= maxRange % granularity;
        return new UblkDeviceParameters(
            info.SizeBytes,
            info.LogicalBlockSize,
            info.PhysicalBlockSize,
            maxIoBytes,
            VolatileCache: (features & BlockBackendFeatures.VolatileCache) != 0,
            Fua: (features & BlockBackendFeatures.Fua) != 0,
            ReadOnly: (features & BlockBackendFeatures.ReadOnly) != 0,
            DiscardGranularity: discard || writeZeroes ? granularity : 0,
            MaxDiscardBytes: discard ? maxRange : 0,
            MaxWriteZeroesBytes: writeZeroes ? maxRange : 0);
    }

    /// <summary>Checks the rules the kernel enforces, with messages naming the parameter.</summary>
    public void Validate()
    {
        if (!IsPowerOfTwoBetween(LogicalBlockSize, 512, Environment.SystemPageSize))
        {
            throw new ArgumentException($"LogicalBlockSize {LogicalBlockSize} is invalid: use a power of two from 512 to {Environment.SystemPageSize}", nameof(LogicalBlockSize));
        }

        if (!IsPowerOfTwoBetween(PhysicalBlockSize, LogicalBlockSize, 1 << 20))
        {
            throw new ArgumentException($"PhysicalBlockSize {PhysicalBlockSize} is invalid: use a power of two from the logical block size ({LogicalBlockSize}) to 1 MiB", nameof(PhysicalBlockSize));
        }

        if (SizeBytes <= 0 || SizeBytes % LogicalBlockSize != 0)
        {
            throw new ArgumentException($"SizeBytes {SizeBytes} is invalid: use a positive multiple of the logical block size ({LogicalBlockSize})", nameof(SizeBytes));
        }

        if (MaxIoBytes < LogicalBlockSize || MaxIoBytes % LogicalBlockSize != 0)
        {
            throw new ArgumentException($"MaxIoBytes {MaxIoBytes} is invalid: use a multiple of the logical block size ({LogicalBlockSize})", nameof(MaxIoBytes));
        }

        if ((MaxDiscardBytes > 0 || MaxWriteZeroesBytes > 0) && DiscardGranularity <= 0)
        {
            throw new ArgumentException("DiscardGranularity must be positive when discard or write-zeroes is enabled", nameof(DiscardGranularity));
        }
    }

    internal UblkParams ToKernel()
    {
        Validate();
        var p = default(UblkParams);
        p.Length = (uint)System.Runtime.CompilerServices.Unsafe.SizeOf<UblkParams>();
        p.Types = UblkAbi.ParamTypeBasic;
        var attrs = 0u;
        if (VolatileCache)
        {
            attrs |= UblkAbi.AttrVolatileCache;
            // The kernel honours FUA only together with a volatile cache.
            if (Fua)
            {
                attrs |= UblkAbi.AttrFua;
            }
        }

        if (ReadOnly)
        {
            attrs |= UblkAbi.AttrReadOnly;
        }

        p.Basic.Attrs = attrs;
        p.Basic.LogicalBsShift = (byte)int.Log2(LogicalBlockSize);
        p.Basic.PhysicalBsShift = (byte)int.Log2(PhysicalBlockSize);
        p.Basic.IoMinShift = p.Basic.LogicalBsShift;
        p.Basic.IoOptShift = p.Basic.PhysicalBsShift;
        p.Basic.MaxSectors = (uint)(MaxIoBytes >> 9);
        p.Basic.DevSectors = (ulong)(SizeBytes >> 9);
        if (MaxDiscardBytes > 0 || MaxWriteZeroesBytes > 0)
        {
            p.Types |= UblkAbi.ParamTypeDiscard;
            p.Discard.DiscardGranularity = (uint)DiscardGranularity;
            p.Discard.MaxDiscardSectors = (uint)(MaxDiscardBytes >> 9);
            p.Discard.MaxWriteZeroesSectors = (uint)(MaxWriteZeroesBytes >> 9);
            p.Discard.MaxDiscardSegments = 1;
        }

        return p;
    }

    internal static UblkDeviceParameters FromKernel(in UblkParams p)
    {
        var hasDiscard = (p.Types & UblkAbi.ParamTypeDiscard) != 0;
        return new UblkDeviceParameters(
            (long)p.Basic.DevSectors << 9,
            1 << p.Basic.LogicalBsShift,
            1 << p.Basic.PhysicalBsShift,
            (int)(p.Basic.MaxSectors << 9),
            VolatileCache: (p.Basic.Attrs & UblkAbi.AttrVolatileCache) != 0,
            Fua: (p.Basic.Attrs & UblkAbi.AttrFua) != 0,
            ReadOnly: (p.Basic.Attrs & UblkAbi.AttrReadOnly) != 0,
            DiscardGranularity: hasDiscard ? (int)p.Discard.DiscardGranularity : 0,
            MaxDiscardBytes: hasDiscard ? (long)p.Discard.MaxDiscardSectors << 9 : 0,
            MaxWriteZeroesBytes: hasDiscard ? (long)p.Discard.MaxWriteZeroesSectors << 9 : 0)
        {
            DiskDevice = (p.Types & UblkAbi.ParamTypeDevt) != 0 ? (p.Devt.DiskMajor, p.Devt.DiskMinor) : default,
        };
    }

    private static bool IsPowerOfTwoBetween(int value, int min, int max) =>
        value >= min && value <= max && int.IsPow2(value);
}
