using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using UblkCsi.Stores.Nbd;
using UblkCsi.TestSupport;

namespace UblkCsi.NodePlugin.Tests;

/// <summary>Alone: the nbd store's logger factory is process-wide, and other tests start hosts of their own.</summary>
[CollectionDefinition(nameof(NodeHostStoreLoggingTests), DisableParallelization = true)]
public sealed class NodeHostStoreLoggingCollection;

/// <summary>nbd store events (connection lost, restored, given up) reach the node plugin's log while it runs, and nowhere after.</summary>
[Collection(nameof(NodeHostStoreLoggingTests))]
public sealed class NodeHostStoreLoggingTests
{
    [Fact]
    public async Task NbdEventsReachTheHostLogWhileItRuns()
    {
        Assert.Same(NullLoggerFactory.Instance, NbdStoreProvider.LoggerFactory);
        var directory = RunningHost.NewDirectory();
        await using (var host = await RunningHost.StartAsync(
            i => NodeHost.RunAsync(i, system: FakeNode.HostSystem), ["--node-id", "n1", "--state-dir", Path.Combine(directory, "state")], directory: directory))
        {
            NbdStoreProvider.LoggerFactory.CreateLogger<NbdClient>().LogWarning("nbd probe: connection lost");
            Assert.Contains(host.Logs.Entries, e => e.Category == typeof(NbdClient).FullName && e.Message == "nbd probe: connection lost");
        }

        // A store opened after the host stopped must not log to its disposed factory.
        Assert.Same(NullLoggerFactory.Instance, NbdStoreProvider.LoggerFactory);
    }
}
