using UblkCsi.Stores.Tests.Conformance;
using UblkCsi.Stores.Tests.Nbd;
using UblkCsi.Stores.Files;
using UblkCsi.TestSupport;

namespace UblkCsi.Stores.Tests.Rpc;

/// <summary>
/// The rpc data path allocates (almost) nothing per request once warm: the NBD client's pooled requests
/// on one side and the block-store server's connection buffers on the other, both in this process (the
/// count is process-wide, so the class runs alone, in the nbd allocation test's collection).
/// </summary>
[Collection(nameof(NbdAllocationTests))]
public sealed class RpcAllocationTests : IDisposable
{
    private readonly string _root = TempDirectory.Create("rpc-allocation");

    public void Dispose() => Directory.Delete(_root, recursive: true);

    [Fact]
    public async Task SteadyStateIoAllocatesAlmostNothingOnClientAndServerTogether()
    {
        await using var server = await LoopbackBlockStoreServer.StartAsync(_root, token: null, directIo: DirectIoMode.Off);
        await using var store = StoreRegistry.Open("rpc", new Dictionary<string, string> { ["endpoint"] = server.Endpoint.ToString() }, new Dictionary<string, string>());
        await store.CreateVolumeAsync(new CreateVolumeRequest("quiet", 8 << 20));
        await using var volume = await store.OpenVolumeAsync("quiet");
        var perIo = 0.0;
        // One thread issues every request, as an engine queue thread does (awaits would hop between
        // thread-pool threads, and each new thread opens a data connection of its own).
        var issuer = new Thread(() =>
        {
            var buffer = new byte[4096];
            Run(volume, buffer, 3000); // warm-up: JIT, pools, the connection
            const int n = 5000;
            var before = GC.GetTotalAllocatedBytes(precise: true);
            Run(volume, buffer, n);
            perIo = (GC.GetTotalAllocatedBytes(precise: true) - before) / (2.0 * n);
        });
        issuer.Start();
        issuer.Join();
        Console.WriteLine($"figure: rpc store allocation per 4 KiB I/O, client and server (whole process): {perIo:0.0} bytes");
        Assert.True(perIo < 64, $"{perIo:0.0} bytes allocated per I/O");
    }

    private static void Run(Engine.IBlockBackend volume, byte[] buffer, int count)
    {
        using var done = new ManualResetEventSlim();
        Action signal = done.Set;
        for (var i = 0; i < count; i++)
        {
            Wait(volume.WriteAsync((i % 1024) * 4096L, buffer), done, signal);
            Wait(volume.ReadAsync((i % 1024) * 4096L, buffer), done, signal);
        }
    }

    /// <summary>Blocks until <paramref name="pending"/> completes without allocating (AsTask would allocate a Task per call).</summary>
    private static void Wait(ValueTask pending, ManualResetEventSlim done, Action signal)
    {
        var awaiter = pending.GetAwaiter();
        if (!awaiter.IsCompleted)
        {
            done.Reset();
            awaiter.UnsafeOnCompleted(signal);
            done.Wait();
        }

        awaiter.GetResult();
    }
}
