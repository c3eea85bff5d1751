using System.Runtime.InteropServices;
using UblkCsi.Linux;

namespace UblkCsi.Engine.Interop;

/// <summary>Owns a Linux file descriptor and closes it exactly once.</summary>
internal sealed class FileDescriptorHandle : SafeHandle
{
    public FileDescriptorHandle(int fd)
        : base(invalidHandleValue: -1, ownsHandle: true)
    {
        SetHandle(fd);
    }

    public override bool IsInvalid => handle < 0;

    /// <summary>The raw descriptor, for system calls made while the owner keeps this handle alive.</summary>
    public int Fd => (int)handle;

    /// <summary>Opens <paramref name="path"/> with O_CLOEXEC added; throws <see cref="UblkException"/> naming the path.</summary>
    public static FileDescriptorHandle Open(string path, int flags)
    {
        var fd = Libc.Open(path, flags | Libc.O_CLOEXEC, 0);
        if (fd < 0)
        {
            var errno = Libc.LastErrno;
            throw new UblkException($"cannot open {path}: {Errno.Describe(errno)}", errno);
        }

        return new FileDescriptorHandle(fd);
    }

    /// <summary>Opens <paramref name="path"/>, or returns the errno when it fails.</summary>
    public static FileDescriptorHandle? TryOpen(string path, int flags, out int errno)
    {
        var fd = Libc.Open(path, flags | Libc.O_CLOEXEC, 0);
        errno = fd < 0 ? Libc.LastErrno : 0;
        return fd < 0 ? null : new FileDescriptorHandle(fd);
    }

    protected override bool ReleaseHandle() => Libc.Close((int)handle) == 0;
}
