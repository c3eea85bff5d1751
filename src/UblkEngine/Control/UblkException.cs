namespace UblkCsi.Engine;

/// <summary>A ublk operation failed; <see cref="Errno"/> carries the kernel's errno when there is one.</summary>
public sealed class UblkException(string message, int errno = 0, Exception? inner = null) : IOException(message, inner)
{
    /// <summary>Positive Linux errno, or 0 when the failure did not come from the kernel.</summary>
    public int Errno { get; } = errno;
}
