namespace UblkCsi.Stores.Internal;

/// <summary>A shared read-only block of zeros for writing zero ranges without allocating.</summary>
internal static class ZeroBlock
{
    private static readonly byte[] Zeros = new byte[1 << 20];

    public static ReadOnlyMemory<byte> Memory => Zeros;

    public static ReadOnlySpan<byte> Span => Zeros;
}
