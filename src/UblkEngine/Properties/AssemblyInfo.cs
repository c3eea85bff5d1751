using System.Runtime.CompilerServices;

// The unit tests drive the io_uring layer and the request dispatcher directly, without a ublk kernel.
[assembly: InternalsVisibleTo("UblkEngine.Tests")]

// The file store's tests play an engine queue thread (a ring and its QueueIo) to prove its ring path.
[assembly: InternalsVisibleTo("Stores.Tests")]
