namespace UblkCsi.Stores.Tests.Nbd;

/// <summary>Runs alone: the allocation counter is process-wide, and other test classes run in parallel.</summary>
[CollectionDefinition(nameof(NbdAllocationTests), DisableParallelization = true)]
public sealed class NbdAllocationCollection;

[Collection(nameof(NbdAllocationTests))]
public sealed class NbdAllocationTests
{
    [NbdkitFact]
    public async Task SteadyStateIoAllocatesAlmostNothing()
    {
        await using var server = await NbdServerProcess.StartNbdkitAsync("memory", "size=8M");
        // One connection: the test's continuations hop between thread-pool threads, and each new
        // thread would otherwise open its own connection (the engine's queue threads are fixed).
        await using var volume = await StoreRegistry.Open("nbd", new Dictionary<string, string> { ["endpoint"] = server.Endpoint.ToString(), ["connections"] = "1" })
            .OpenVolumeAsync("x");
        var buffer = new byte[4096];
        for (var i = 0; i < 2000; i++)
        {
            await volume.WriteAsync((i % 1024) * 4096L, buffer);
            await volume.ReadAsync((i % 1024) * 4096L, buffer);
        }

        const int n = 5000;
        var before = GC.GetTotalAllocatedBytes(precise: true);
        for (var i = 0; i < n; i++)
        {
            await volume.WriteAsync((i % 1024) * 4096L, buffer);
            await volume.ReadAsync((i % 1024) * 4096L, buffer);
        }

        var perIo = (GC.GetTotalAllocatedBytes(precise: true) - before) / (2.0 * n);
        Console.WriteLine($"figure: nbd store allocation per 4 KiB I/O (whole process): {perIo:0.0} bytes");
        Assert.True(perIo < 64, $"{perIo:0.0} bytes allocated per I/O");
    }
}
