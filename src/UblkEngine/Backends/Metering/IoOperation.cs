namespace UblkCsi.Engine.Backends.Metering;

/// <summary>The block operations a meter counts, one slot each.</summary>
public enum IoOperation
{
    Read,
    Write,
    Flush,
    Discard,
    WriteZeroes,
}
