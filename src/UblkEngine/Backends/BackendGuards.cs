namespace UblkCsi.Engine.Backends;

/// <summary>Argument checks shared by the engine's own backends.</summary>
internal static class BackendGuards
{
    public static void CheckGeometry(long sizeBytes, int logicalBlockSize, int physicalBlockSize)
    {
        if (logicalBlockSize is not (512 or 1024 or 2048 or 4096))
        {
            throw new ArgumentOutOfRangeException(nameof(logicalBlockSize), logicalBlockSize, "logical block size must be 512, 1024, 2048 or 4096");
        }

        if (physicalBlockSize < logicalBlockSize || !int.IsPow2(physicalBlockSize) || physicalBlockSize > 1 << 20)
        {
            throw new ArgumentOutOfRangeException(nameof(physicalBlockSize), physicalBlockSize, $"physical block size must be a power of two from {logicalBlockSize} to 1 MiB");
        }

        if (sizeBytes <= 0 || sizeBytes % logicalBlockSize != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(sizeBytes), sizeBytes, $"size must be a positive multiple of the logical block size ({logicalBlockSize})");
        }
    }

    /// <summary>Rejects ranges outside the device (EINVAL), which the kernel never sends but direct callers might.</summary>
    public static void CheckRange(in BlockBackendInfo info, long offset, long length)
    {
        if (offset < 0 || length < 0 || offset > info.SizeBytes - length)
        {
            throw new BlockBackendException(BlockBackendException.EINVAL, $"range [{offset}, +{length}) is outside the device (size {info.SizeBytes})");
        }
    }
}
