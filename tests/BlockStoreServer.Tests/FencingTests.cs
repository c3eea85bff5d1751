using Google.Protobuf;
using Grpc.Core;
using UblkCsi.BlockStoreServer.Tests.Support;
using UblkCsi.Engine;
using UblkCsi.GrpcEndpoints;
using UblkCsi.GrpcHosting;
using UblkCsi.Stores;
using UblkCsi.Stores.Files;
using UblkCsi.Stores.Rpc;
using UblkCsi.TestSupport;
using Wire = UblkCsi.BlockStore.V1;

namespace UblkCsi.BlockStoreServer.Tests;

/// <summary>
/// Single writer on the data path: a read-write open takes the volume's writer lease, and the server
/// refuses every mutation of an earlier writer with FAILED_PRECONDITION (EIO on the device), so a
/// writer that was taken over gets errors, never a silent overwrite of the new writer's data.
/// </summary>
public sealed class FencingTests
{
    private const int Block = 64 * 1024;

    [Fact]
    public async Task TheFirstWritersMutationsFailAfterASecondWriterOpensAndTheSecondWritersBytesStay()
    {
        await using var host = await ServiceHost.StartAsync(StoreRegistry.Open("memory", new Dictionary<string, string>()));
        await using var nodeA = new RpcStore(new RpcStoreOptions(host.Endpoint));
        await using var nodeB = new RpcStore(new RpcStoreOptions(host.Endpoint));
        await nodeA.CreateVolumeAsync(new CreateVolumeRequest("shared", 8 << 20));
        await using var writerA = await nodeA.OpenVolumeAsync("shared");
        await writerA.WriteAsync(0, Pattern(1, Block));
        await writerA.FlushAsync();

        await using var writerB = await nodeB.OpenVolumeAsync("shared");
        var write = await Assert.ThrowsAsync<BlockBackendException>(() => writerA.WriteAsync(0, Pattern(2, Block)).AsTask());
        var flush = await Assert.ThrowsAsync<BlockBackendException>(() => writerA.FlushAsync().AsTask());
        var discard = await Assert.ThrowsAsync<BlockBackendException>(() => writerA.DiscardAsync(0, Block).AsTask());
        var zeroes = await Assert.ThrowsAsync<BlockBackendException>(() => writerA.WriteZeroesAsync(0, Block).AsTask());
        await writerB.WriteAsync(0, Pattern(3, Block), BlockWriteFlags.Fua);

        Assert.All(new[] { write, flush, discard, zeroes }, e =>
        {
            Assert.Equal(BlockBackendException.EIO, e.Errno);
            Assert.Contains("opened for writing elsewhere", e.Message);
        });
        var condition = ((StoreVolume)writerA).Condition;
        Assert.True(condition.Abnormal);
        Assert.StartsWith("taken over: ", condition.Message);
        Assert.False(((StoreVolume)writerB).Condition.Abnormal);
        Assert.Equal(((RpcVolume)writerA).WriterGeneration + 1, ((RpcVolume)writerB).WriterGeneration);

        // What anyone reads back is the second writer's data, the taken-over writer included.
        Assert.Equal(Pattern(3, Block), await ReadAsync(writerB, 0, Block));
        Assert.Equal(Pattern(3, Block), await ReadAsync(writerA, 0, Block));
    }

    [Fact]
    public async Task AfterBothWritersCloseAThirdOpenerReadsTheSecondWritersBytes()
    {
        var root = Directory.CreateTempSubdirectory("fence-three-").FullName;
        try
        {
            // As the server host opens it: writers are the server's to arbitrate.
            await using var host = await ServiceHost.StartAsync(new FileStore(new FileStoreOptions(root, ExclusiveWriters: false)));
            await using var node = new RpcStore(new RpcStoreOptions(host.Endpoint));
            await node.CreateVolumeAsync(new CreateVolumeRequest("three", 8 << 20));
            var writerA = await node.OpenVolumeAsync("three");
            await writerA.WriteAsync(0, Pattern(1, Block));
            var writerB = await node.OpenVolumeAsync("three");
            await Assert.ThrowsAsync<BlockBackendException>(() => writerA.WriteAsync(0, Pattern(2, Block)).AsTask());
            await writerB.WriteAsync(0, Pattern(3, Block));
            await writerB.FlushAsync();
            await Assert.ThrowsAnyAsync<Exception>(() => writerA.FlushAsync().AsTask());
            await writerA.DisposeAsync();
            await writerB.DisposeAsync();

            await using var third = await node.OpenVolumeAsync("three");
            Assert.Equal(Pattern(3, Block), await ReadAsync(third, 0, Block));
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    [Fact]
    public async Task AWriteInFlightWhenTheSecondWriterOpensHasLandedBeforeTheOpenReturns()
    {
        var store = new FaultyStore(StoreRegistry.Open("memory", new Dictionary<string, string>()));
        await using var host = await ServiceHost.StartAsync(store);
        await using var nodeA = new RpcStore(new RpcStoreOptions(host.Endpoint));
        await using var nodeB = new RpcStore(new RpcStoreOptions(host.Endpoint));
        await nodeA.CreateVolumeAsync(new CreateVolumeRequest("racing", 8 << 20));
        await using var writerA = await nodeA.OpenVolumeAsync("racing");
        var held = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        store.BeforeWrite = async _ =>
        {
            held.TrySetResult();
            await release.Task;
        };

        var writeA = writerA.WriteAsync(0, Pattern(1, Block)).AsTask();
        await held.Task;
        var openB = nodeB.OpenVolumeAsync("racing");
        await Task.Delay(200);
        var openedWhileAWasRunning = openB.IsCompleted;
        store.BeforeWrite = null;
        release.SetResult();
        await writeA; // admitted before the takeover: it completes
        await using var writerB = await openB;
        await writerB.WriteAsync(0, Pattern(2, Block));

        Assert.False(openedWhileAWasRunning);
        Assert.Equal(Pattern(2, Block), await ReadAsync(writerB, 0, Block));
    }

    [Fact]
    public async Task AReadOnlyOpenTakesNoLease()
    {
        await using var host = await ServiceHost.StartAsync(StoreRegistry.Open("memory", new Dictionary<string, string>()));
        await using var node = new RpcStore(new RpcStoreOptions(host.Endpoint));
        await node.CreateVolumeAsync(new CreateVolumeRequest("watched", 8 << 20));
        await using var writer = await node.OpenVolumeAsync("watched");
        await using var reader = await node.OpenVolumeAsync("watched", VolumeAccess.ReadOnly);

        await writer.WriteAsync(0, Pattern(4, Block), BlockWriteFlags.Fua);

        Assert.Equal(0UL, ((RpcVolume)reader).WriterGeneration);
        Assert.Equal(Pattern(4, Block), await ReadAsync(reader, 0, Block));
    }

    [Fact]
    public async Task TheGenerationSurvivesAServerRestartAndStaleUnaryMutationsAreRefusedWithTheDistinctError()
    {
        var root = TestPaths.NewDirectory("fence");
        try
        {
            ulong first;
            await using (var store = new FileStore(new FileStoreOptions(root, ExclusiveWriters: false)))
            await using (var host = await ServiceHost.StartAsync(store))
            await using (var node = new RpcStore(new RpcStoreOptions(host.Endpoint)))
            {
                await node.CreateVolumeAsync(new CreateVolumeRequest("durable", 8 << 20));
                await using var writer = await node.OpenVolumeAsync("durable");
                first = ((RpcVolume)writer).WriterGeneration;
            }

            // A new server process over the same root: it knows generation `first` without any open.
            await using var restartedStore = new FileStore(new FileStoreOptions(root, ExclusiveWriters: false));
            await using var restarted = await ServiceHost.StartAsync(restartedStore);
            using var channel = GrpcChannels.Create(restarted.Endpoint, new GrpcChannelSettings { MaxReceiveMessageBytes = BlockStoreProtocol.MaxMessageBytes });
            await channel.CallAsync<Wire.WriteRequest, Wire.WriteResponse>(BlockStoreProtocol.Method("Write"), Write(first));
            var unleased = await Assert.ThrowsAsync<RpcException>(() => channel.CallAsync<Wire.WriteRequest, Wire.WriteResponse>(BlockStoreProtocol.Method("Write"), Write(0)));
            var second = await channel.CallAsync<Wire.OpenVolumeRequest, Wire.OpenVolumeResponse>(
                BlockStoreProtocol.Method("OpenVolume"), new Wire.OpenVolumeRequest { VolumeId = "durable", ReadWrite = true });
            var stale = await Assert.ThrowsAsync<RpcException>(() => channel.CallAsync<Wire.WriteRequest, Wire.WriteResponse>(BlockStoreProtocol.Method("Write"), Write(first)));
            var staleFlush = await Assert.ThrowsAsync<RpcException>(() => channel.CallAsync<Wire.FlushRequest, Wire.FlushResponse>(
                BlockStoreProtocol.Method("Flush"), new Wire.FlushRequest { VolumeId = "durable", WriterGeneration = first }));
            var readOnly = await channel.CallAsync<Wire.OpenVolumeRequest, Wire.OpenVolumeResponse>(
                BlockStoreProtocol.Method("OpenVolume"), new Wire.OpenVolumeRequest { VolumeId = "durable" });
            await channel.CallAsync<Wire.WriteRequest, Wire.WriteResponse>(BlockStoreProtocol.Method("Write"), Write(second.WriterGeneration));

            Assert.Equal(first + 1, second.WriterGeneration);
            Assert.Equal(0UL, readOnly.WriterGeneration);
            Assert.All(new[] { unleased, stale, staleFlush }, e =>
            {
                Assert.Equal(StatusCode.FailedPrecondition, e.StatusCode);
                Assert.Contains("opened for writing elsewhere", e.Status.Detail);
                Assert.Equal(BlockBackendException.EIO, RpcErrorCodec.ToBackendException(e, "durable", "test").Errno);
            });
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }

        static Wire.WriteRequest Write(ulong generation) =>
            new() { VolumeId = "durable", Offset = 0, Data = ByteString.CopyFrom(Pattern(5, 4096)), WriterGeneration = generation };
    }

    [Fact]
    public async Task AVolumeNobodyLeasedAcceptsMutationsWithoutAGeneration()
    {
        await using var host = await ServiceHost.StartAsync(StoreRegistry.Open("memory", new Dictionary<string, string>()));
        await using (var node = new RpcStore(new RpcStoreOptions(host.Endpoint)))
        {
            await node.CreateVolumeAsync(new CreateVolumeRequest("legacy", 8 << 20));
        }

        using var channel = GrpcChannels.Create(host.Endpoint, new GrpcChannelSettings { MaxReceiveMessageBytes = BlockStoreProtocol.MaxMessageBytes });
        await channel.CallAsync<Wire.WriteRequest, Wire.WriteResponse>(BlockStoreProtocol.Method("Write"),
            new Wire.WriteRequest { VolumeId = "legacy", Data = ByteString.CopyFrom(new byte[4096]) });
        await channel.CallAsync<Wire.FlushRequest, Wire.FlushResponse>(BlockStoreProtocol.Method("Flush"), new Wire.FlushRequest { VolumeId = "legacy" });
    }

    private static byte[] Pattern(int seed, int length)
    {
        var data = new byte[length];
        new Random(seed).NextBytes(data);
        return data;
    }

    private static async Task<byte[]> ReadAsync(IBlockBackend volume, long offset, int length)
    {
        var data = new byte[length];
        await volume.ReadAsync(offset, data);
        return data;
    }
}
