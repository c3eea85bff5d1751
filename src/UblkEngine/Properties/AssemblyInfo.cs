using System.Runtime.CompilerServices;

// The unit tests drive the io_uring layer and the request dispatcher directly, without a ublk kernel.
[assembly: InternalsVisibleTo("UblkEngine.Tests")]
