using UblkCsi.Engine;

namespace UblkCsi.Stores.Nbd;

/// <summary>Maps the error values an NBD server returns to the errno the kernel should see.</summary>
internal static class NbdErrors
{
    public static int ToLinuxErrno(int nbdError, NbdCommand command) => nbdError switch
    {
        // A write (or a flush) refused with EPERM is a read-only export: the kernel reports EROFS for that.
        NbdErrno.EPERM when command is NbdCommand.Write or NbdCommand.Trim or NbdCommand.WriteZeroes or NbdCommand.Flush => BlockBackendException.EROFS,
        NbdErrno.ENOSPC => BlockBackendException.ENOSPC,
        NbdErrno.EINVAL or NbdErrno.EOVERFLOW => BlockBackendException.EINVAL,
        NbdErrno.ENOTSUP => BlockBackendException.EOPNOTSUPP,
        NbdErrno.ENOMEM => 12,
        _ => BlockBackendException.EIO,
    };

    public static string Name(int nbdError) => nbdError switch
    {
        NbdErrno.EPERM => "EPERM",
        NbdErrno.EIO => "EIO",
        NbdErrno.ENOMEM => "ENOMEM",
        NbdErrno.EINVAL => "EINVAL",
        NbdErrno.ENOSPC => "ENOSPC",
        NbdErrno.EOVERFLOW => "EOVERFLOW",
        NbdErrno.ENOTSUP => "ENOTSUP",
        NbdErrno.ESHUTDOWN => "ESHUTDOWN",
        _ => $"error {nbdError}",
    };
}
