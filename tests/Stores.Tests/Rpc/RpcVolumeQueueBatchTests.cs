using UblkCsi.Engine;
using UblkCsi.Stores.Tests.Conformance;
using UblkCsi.TestSupport;
using UblkCsi.Tests.Shared;

namespace UblkCsi.Stores.Tests.Rpc;

/// <summary>
/// On an engine queue thread the rpc volume holds what the queue's dispatch batch submits and sends it
/// on its data connection at the batch's end (one send for the batch). The test thread plays the queue
/// thread (a QueueIo bound to it, with no await while it is bound) against a real block-store server.
/// </summary>
public sealed class RpcVolumeQueueBatchTests : IDisposable
{
    private readonly string _root = TempDirectory.Create("rpc-queue-batch");

    public void Dispose() => Directory.Delete(_root, recursive: true);

    [Fact]
    public async Task RequestsOfAQueueBatchAreSentOnlyAtItsEnd()
    {
        await using var server = await LoopbackBlockStoreServer.StartAsync(_root, token: null);
        await using var store = StoreRegistry.Open("rpc", new Dictionary<string, string> { ["endpoint"] = server.Endpoint.ToString() }, new Dictionary<string, string>());
        var volume = await store.CreateVolumeAsync(new CreateVolumeRequest("batch", 1 << 20));
        await using var backend = await store.OpenVolumeAsync(volume.Id);
        var data = new byte[8192];
        Random.Shared.NextBytes(data);

        var (first, second, sentEarly) = SubmitOneQueueBatch(backend, data);

        Assert.False(sentEarly, "a write went out before the queue's batch ended");
        await first;
        await second;
        var back = new byte[8192];
        await backend.ReadAsync(0, back);
        Assert.Equal(data, back);
    }

    /// <summary>
    /// A write from this thread before it plays a queue (so its connection is open and answering), then two
    /// writes from a queue thread's dispatch, a pause, and the batch end.
    /// </summary>
    private static (ValueTask First, ValueTask Second, bool SentEarly) SubmitOneQueueBatch(IBlockBackend backend, byte[] data)
    {
        var warmUp = backend.WriteAsync(0, data.AsMemory(0, 4096)).AsTask();
        Assert.True(SpinWait.SpinUntil(() => warmUp.IsCompleted, TimeSpan.FromSeconds(30)));
        warmUp.GetAwaiter().GetResult();

        using var queue = new TestQueueThread();
        var first = backend.WriteAsync(0, data.AsMemory(0, 4096));
        var second = backend.WriteAsync(4096, data.AsMemory(4096));
        // Ample for a loopback round trip on the open connection, had they been sent.
        var sentEarly = SpinWait.SpinUntil(() => first.IsCompleted || second.IsCompleted, TimeSpan.FromSeconds(2));
        queue.Io.EndBatch();
        return (first, second, sentEarly);
    }
}
