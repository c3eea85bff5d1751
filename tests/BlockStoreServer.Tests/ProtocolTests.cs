using UblkCsi.GrpcEndpoints;
using UblkCsi.TestSupport;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Wire = UblkCsi.BlockStore.V1;
using UblkCsi.BlockStoreServer.Tests.Support;
using UblkCsi.Engine;
using UblkCsi.GrpcHosting;
using UblkCsi.Stores;
using UblkCsi.Stores.Rpc;

namespace UblkCsi.BlockStoreServer.Tests;

/// <summary>The wire contract: bounded messages, structured errors, errnos across the wire, the sensitive marker.</summary>
public sealed class ProtocolTests
{
    [Fact]
    public async Task PayloadsAboveTheLimitAreRejectedNamingTheField()
    {
        await using var host = await ServiceHost.StartAsync(StoreRegistry.Open("memory", new Dictionary<string, string>()));
        using var client = GrpcChannels.Create(host.Endpoint, new GrpcChannelSettings { MaxReceiveMessageBytes = BlockStoreProtocol.MaxMessageBytes });
        await using (var store = new RpcStore(new RpcStoreOptions(host.Endpoint)))
        {
            await store.CreateVolumeAsync(new CreateVolumeRequest("v", 8 << 20));
        }

        var write = await Assert.ThrowsAsync<RpcException>(() => client.CallAsync<Wire.WriteRequest, Wire.WriteResponse>(
            BlockStoreProtocol.Method("Write"),
            new Wire.WriteRequest { VolumeId = "v", Offset = 0, Data = ByteString.CopyFrom(new byte[BlockStoreProtocol.MaxPayloadBytes + 4096]) }));
        Assert.Equal(StatusCode.InvalidArgument, write.StatusCode);
        Assert.Equal("data", Info(write).Parameter);

        var read = await Assert.ThrowsAsync<RpcException>(() => client.CallAsync<Wire.ReadRequest, Wire.ReadResponse>(
            BlockStoreProtocol.Method("Read"), new Wire.ReadRequest { VolumeId = "v", Offset = 0, Length = (uint)BlockStoreProtocol.MaxPayloadBytes + 512 }));
        Assert.Equal(StatusCode.InvalidArgument, read.StatusCode);
        Assert.Equal("length", Info(read).Parameter);

        // A message beyond the server's receive limit never reaches the service.
        var huge = await Assert.ThrowsAsync<RpcException>(() => client.CallAsync<Wire.WriteRequest, Wire.WriteResponse>(
            BlockStoreProtocol.Method("Write"), new Wire.WriteRequest { VolumeId = "v", Data = ByteString.CopyFrom(new byte[2 << 20]) }));
        Assert.Equal(StatusCode.ResourceExhausted, huge.StatusCode);
    }

    [Fact]
    public async Task LargeIoIsSplitIntoBoundedCallsAndReassembled()
    {
        await using var host = await ServiceHost.StartAsync(StoreRegistry.Open("memory", new Dictionary<string, string>()));
        await using var store = new RpcStore(new RpcStoreOptions(host.Endpoint));
        await store.CreateVolumeAsync(new CreateVolumeRequest("big", 16 << 20));
        await using var volume = await store.OpenVolumeAsync("big");
        var data = new byte[(5 << 20) + 1536]; // five full pieces and a partial one
        new Random(5).NextBytes(data);

        await volume.WriteAsync(512, data, BlockWriteFlags.Fua);
        var read = new byte[data.Length];
        await volume.ReadAsync(512, read);

        Assert.Equal(data, read);
    }

    [Fact]
    public async Task FlushAndFuaReachTheServersStore()
    {
        var store = new FaultyStore(StoreRegistry.Open("memory", new Dictionary<string, string>()));
        await using var host = await ServiceHost.StartAsync(store);
        await using var client = new RpcStore(new RpcStoreOptions(host.Endpoint));
        await client.CreateVolumeAsync(new CreateVolumeRequest("durable", 8 << 20));
        await using var volume = await client.OpenVolumeAsync("durable");
        Assert.Equal(BlockBackendFeatures.VolatileCache | BlockBackendFeatures.Fua, volume.Info.Features & (BlockBackendFeatures.VolatileCache | BlockBackendFeatures.Fua));

        await volume.WriteAsync(0, new byte[4096]);
        Assert.Equal((0, 0), (store.FuaWrites, store.Flushes));
        await volume.WriteAsync(0, new byte[4096], BlockWriteFlags.Fua);
        Assert.Equal(1, store.FuaWrites);
        await volume.WriteAsync(0, new byte[(2 << 20) + 4096], BlockWriteFlags.Fua); // three pieces, each durable
        Assert.Equal(4, store.FuaWrites);
        await volume.FlushAsync();
        Assert.Equal(1, store.Flushes);
    }

    [Fact]
    public async Task BackendErrnosTravelToTheClient()
    {
        var store = new FaultyStore(StoreRegistry.Open("memory", new Dictionary<string, string>()));
        await using var host = await ServiceHost.StartAsync(store);
        await using var client = new RpcStore(new RpcStoreOptions(host.Endpoint));
        await client.CreateVolumeAsync(new CreateVolumeRequest("faulty", 4 << 20));
        await using var volume = await client.OpenVolumeAsync("faulty");
        store.BeforeWrite = offset => offset switch
        {
            0 => throw new BlockBackendException(BlockBackendException.ENOSPC, "volume 'faulty': write failed: No space left on device"),
            4096 => throw new BlockBackendException(BlockBackendException.EIO, "volume 'faulty': write failed: Input/output error"),
            _ => Task.CompletedTask,
        };

        // The data path (NBD, simple replies) carries the errno; the message names it.
        var full = await Assert.ThrowsAsync<BlockBackendException>(async () => await volume.WriteAsync(0, new byte[4096]));
        Assert.Equal(BlockBackendException.ENOSPC, full.Errno);
        Assert.Contains("Write of 4096 bytes at 0 failed with ENOSPC", full.Message);
        var broken = await Assert.ThrowsAsync<BlockBackendException>(async () => await volume.WriteAsync(4096, new byte[4096]));
        Assert.Equal(BlockBackendException.EIO, broken.Errno);
        await volume.WriteAsync(8192, new byte[4096]);

        // A range the server's volume rejects comes back as EINVAL (the client checks first, so ask the server directly).
        using var raw = GrpcChannels.Create(host.Endpoint);
        var range = await Assert.ThrowsAsync<RpcException>(() => raw.CallAsync<Wire.ReadRequest, Wire.ReadResponse>(
            BlockStoreProtocol.Method("Read"), new Wire.ReadRequest { VolumeId = "faulty", Offset = 4 << 20, Length = 512 }));
        Assert.Equal(StatusCode.InvalidArgument, range.StatusCode);
        Assert.Equal(BlockBackendException.EINVAL, Info(range).Errno);
    }

    [Fact]
    public async Task AVolumeDeletedBehindAnOpenClientFailsItsIoWithEio()
    {
        await using var host = await ServiceHost.StartAsync(StoreRegistry.Open("memory", new Dictionary<string, string>()));
        await using var store = new RpcStore(new RpcStoreOptions(host.Endpoint, Retry: new RpcRetryPolicy(2, TimeSpan.FromMilliseconds(20), TimeSpan.FromMilliseconds(50))));
        await store.CreateVolumeAsync(new CreateVolumeRequest("vanishing", 1 << 20));
        await using var volume = await store.OpenVolumeAsync("vanishing");
        await volume.WriteAsync(0, new byte[4096]);

        Assert.True(await store.DeleteVolumeAsync("vanishing"));

        // On the open connection the server answers EIO; a connection opened now (another thread's) is
        // refused the export, and the client gives up after its retry budget: EIO either way.
        var e = await Assert.ThrowsAsync<BlockBackendException>(async () => await volume.ReadAsync(0, new byte[4096]));
        Assert.Equal(BlockBackendException.EIO, e.Errno);
    }

    [Fact]
    public async Task ControlErrorsKeepTheirTypeAndFieldsAcrossTheWire()
    {
        await using var host = await ServiceHost.StartAsync(StoreRegistry.Open("memory", new Dictionary<string, string> { ["capacity"] = "8Mi" }));
        await using var store = new RpcStore(new RpcStoreOptions(host.Endpoint));
        await store.CreateVolumeAsync(new CreateVolumeRequest("first", 4 << 20));

        var exists = await Assert.ThrowsAsync<StoreAlreadyExistsException>(() => store.CreateVolumeAsync(new CreateVolumeRequest("first", 2 << 20)));
        Assert.Equal(StoreObjectKind.Volume, exists.Kind);
        Assert.Equal("first", exists.Name);
        Assert.Equal("volume 'first' already exists with size 4194304 bytes (requested 2097152)", exists.Message);

        var full = await Assert.ThrowsAsync<StoreCapacityException>(() => store.CreateVolumeAsync(new CreateVolumeRequest("second", 6 << 20)));
        Assert.Equal(StoreErrorCode.ResourceExhausted, full.Code);

        var size = await Assert.ThrowsAsync<StoreParameterException>(() => store.ExpandVolumeAsync("first", -1));
        Assert.Equal("sizeBytes", size.ParameterName);
        Assert.Equal("parameter 'sizeBytes': must be a positive number of bytes, got -1", size.Message);

        var snapshot = await Assert.ThrowsAsync<StoreNotFoundException>(() => store.CreateVolumeAsync(new CreateVolumeRequest("x", 0, VolumeSource.FromSnapshot("nope"))));
        Assert.Equal(StoreObjectKind.Snapshot, snapshot.Kind);
        Assert.Equal("nope", snapshot.Id);
    }

    [Fact]
    public async Task ListsArePagedByTheServerAndReassembledInOrder()
    {
        await using var host = await ServiceHost.StartAsync(StoreRegistry.Open("memory", new Dictionary<string, string>()), listPageSize: 7);
        await using var store = new RpcStore(new RpcStoreOptions(host.Endpoint));
        var names = Enumerable.Range(0, 50).Select(i => $"v-{i:D3}").ToList();
        foreach (var name in names.OrderBy(_ => Random.Shared.Next()))
        {
            await store.CreateVolumeAsync(new CreateVolumeRequest(name, 4096));
        }

        foreach (var name in names.Take(17))
        {
            await store.CreateSnapshotAsync(name, "s-" + name);
        }

        Assert.Equal(names, (await store.ListVolumesAsync()).Select(v => v.Id));
        Assert.Equal(names.Take(17).Select(n => "s-" + n), (await store.ListSnapshotsAsync()).Select(s => s.Id));
        Assert.Equal(["s-v-003"], (await store.ListSnapshotsAsync("v-003")).Select(s => s.Id));

        using var raw = GrpcChannels.Create(host.Endpoint);
        var page = await raw.CallAsync<Wire.ListVolumesRequest, Wire.ListVolumesResponse>(BlockStoreProtocol.Method("ListVolumes"), new Wire.ListVolumesRequest { MaxEntries = 3 });
        Assert.Equal(["v-000", "v-001", "v-002"], page.Volumes.Select(v => v.Id));
        Assert.Equal("v-002", page.NextToken);
        var bad = await Assert.ThrowsAsync<RpcException>(() => raw.CallAsync<Wire.ListVolumesRequest, Wire.ListVolumesResponse>(
            BlockStoreProtocol.Method("ListVolumes"), new Wire.ListVolumesRequest { StartingToken = "../x" }));
        Assert.Equal("startingToken", Info(bad).Parameter);
    }

    [Fact]
    public async Task AnUnknownSourceKindIsAnInvalidArgumentNamingTheField()
    {
        await using var host = await ServiceHost.StartAsync(StoreRegistry.Open("memory", new Dictionary<string, string>()));
        using var client = GrpcChannels.Create(host.Endpoint);
        var e = await Assert.ThrowsAsync<RpcException>(() => client.CallAsync<Wire.CreateVolumeRequest, Wire.CreateVolumeResponse>(
            BlockStoreProtocol.Method("CreateVolume"),
            new Wire.CreateVolumeRequest { Name = "n", SizeBytes = 4096, Source = new Wire.VolumeSource { Id = "s" } }));

        Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
        Assert.Equal("source", Info(e).Parameter);
    }

    [Fact]
    public void NoFieldThatLooksLikeACredentialLacksTheSensitiveMarker()
    {
        var suspicious = new[] { "token", "secret", "password", "credential", "key" };
        foreach (var message in Wire.BlockstoreReflection.Descriptor.MessageTypes)
        {
            foreach (var field in message.Fields.InDeclarationOrder())
            {
                if (suspicious.Any(s => field.Name.Contains(s, StringComparison.OrdinalIgnoreCase)) && field.Name != "next_token" && field.Name != "starting_token")
                {
                    Assert.True(field.GetOptions()?.GetExtension(Wire.BlockstoreExtensions.Sensitive) == true, $"{message.Name}.{field.Name} looks like a credential but is not marked (sensitive) = true");
                }
            }
        }

        Assert.Equal("ublkcsi.blockstore.v1.BlockStore", BlockStoreProtocol.Service.FullName);
        // Every rpc is unary: the data path of a device is NBD, on a listener of its own.
        Assert.All(BlockStoreProtocol.Service.Methods, m => Assert.False(m.IsClientStreaming || m.IsServerStreaming));
    }

    private static Wire.StoreErrorInfo Info(RpcException e)
    {
        var details = e.Trailers.GetValueBytes("grpc-status-details-bin");
        Assert.NotNull(details);
        var status = Wire.ErrorStatus.Parser.ParseFrom(details);
        Assert.Equal((int)e.StatusCode, status.Code);
        return status.Details.Single().Unpack<Wire.StoreErrorInfo>();
    }
}
