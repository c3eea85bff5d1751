using UblkCsi.Engine.Interop;

namespace UblkCsi.Engine.IoUring;

/// <summary>An io_uring system call failed.</summary>
public sealed class IoUringException(string operation, int errno)
    : IOException($"{operation} failed: {Interop.Errno.Describe(errno)}")
{
    /// <summary>Positive Linux errno.</summary>
    public int Errno { get; } = errno;
}
