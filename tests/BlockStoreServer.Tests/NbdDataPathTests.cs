using System.Diagnostics;
using System.Net.Sockets;
using UblkCsi.BlockStoreServer.Tests.Support;
using UblkCsi.GrpcEndpoints;
using UblkCsi.GrpcHosting;
using UblkCsi.Stores;
using UblkCsi.Stores.Nbd;
using UblkCsi.Stores.Rpc;
using UblkCsi.TestSupport;
using Wire = UblkCsi.BlockStore.V1;

namespace UblkCsi.BlockStoreServer.Tests;

/// <summary>
/// The data path's NBD listener over real sockets: only a ticket OpenVolume issued opens a volume, and
/// only what it grants; TLS is required when the server has it; a broken client is cut off without
/// harming others; an independent NBD client (qemu-io) reads and writes through it.
/// </summary>
public sealed class NbdDataPathTests
{
    private const int Block = 64 * 1024;

    [Fact]
    public async Task OnlyATicketFromOpenVolumeOpensAVolumeAndAReadOnlyTicketCannotWrite()
    {
        await using var host = await ServiceHost.StartAsync(StoreRegistry.Open("memory", new Dictionary<string, string>()));
        await using var store = new RpcStore(new RpcStoreOptions(host.Endpoint));
        await store.CreateVolumeAsync(new CreateVolumeRequest("ticketed", 4 << 20));
        var readWrite = await OpenAsync(host, "ticketed", readWrite: true);
        var readOnly = await OpenAsync(host, "ticketed", readWrite: false);
        Assert.Equal(host.Service.DataEndpoint!.ToString(), readWrite.NbdEndpoint);

        // The volume's name, a forged generation, a changed access: unknown exports.
        var parts = readWrite.NbdExport.Split(':');
        foreach (var forged in new[] { "ticketed", $"ticketed:{ulong.Parse(parts[1]) + 1}:rw:{parts[3]}", $"{parts[0]}:{parts[1]}:rw:{readOnly.NbdExport.Split(':')[3]}", readWrite.NbdExport[..^1] + (readWrite.NbdExport[^1] == 'A' ? "B" : "A") })
        {
            var refused = await Assert.ThrowsAnyAsync<StoreException>(() => ConnectAsync(host, forged));
            Assert.Equal(StoreErrorCode.NotFound, refused.Code);
            Assert.DoesNotContain(parts[3], refused.Message); // the credential part of a name is never echoed
        }

        await using (var writer = await ConnectAsync(host, readWrite.NbdExport + "#0"))
        {
            await writer.WriteAsync(0, Pattern(5, Block), fua: true);
        }

        // A read-only ticket reads the bytes and is refused writes (and the export says it is read-only).
        await using var reader = await ConnectAsync(host, readOnly.NbdExport + "#0", readOnlyClient: true);
        Assert.True(reader.Export.IsReadOnly);
        var read = new byte[Block];
        await reader.ReadAsync(0, read);
        Assert.Equal(Pattern(5, Block), read);
        var write = await Assert.ThrowsAsync<Engine.BlockBackendException>(async () => await reader.WriteAsync(0, new byte[4096], fua: false));
        Assert.Equal(Engine.BlockBackendException.EROFS, write.Errno);

        // The server's log (every level) never shows a ticket's seal.
        Assert.DoesNotContain(parts[3], host.Logs.Text);
    }

    [Fact]
    public async Task AServerWithTlsRefusesAnExportToAClientThatDidNotStartTls()
    {
        var ca = TestCertificates.NewAuthority("data path test CA");
        var certificate = ca.IssueServer();
        await using var host = await ServiceHost.StartAsync(StoreRegistry.Open("memory", new Dictionary<string, string>()),
            tls: new GrpcServerTls { ServerCertificate = () => certificate });
        await using var store = RpcStoreProvider.Instance.OpenStore(
            new Dictionary<string, string> { ["endpoint"] = host.Endpoint.ToString(), ["tls"] = "true" },
            new Dictionary<string, string> { ["caCert"] = ca.AuthorityPem });
        await store.CreateVolumeAsync(new CreateVolumeRequest("sealed", 1 << 20));
        string ticket;
        await using (var volume = (RpcVolume)await store.OpenVolumeAsync("sealed"))
        {
            await volume.WriteAsync(0, Pattern(9, Block)); // over STARTTLS
            ticket = volume.DataClient.Options.Export;
        }

        var e = await Assert.ThrowsAnyAsync<StoreException>(() => ConnectAsync(host, ticket));
        Assert.Contains("TLS", e.Message);
    }

    [Fact]
    public async Task AClientThatBreaksTheProtocolIsCutOffAndOthersAreServed()
    {
        await using var host = await ServiceHost.StartAsync(StoreRegistry.Open("memory", new Dictionary<string, string>()));
        await using var store = new RpcStore(new RpcStoreOptions(host.Endpoint));
        await store.CreateVolumeAsync(new CreateVolumeRequest("sturdy", 1 << 20));

        using (var rogue = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp))
        {
            await rogue.ConnectAsync("127.0.0.1", host.Service.DataEndpoint!.Port);
            var greeting = new byte[18];
            await ReceiveExactlyAsync(rogue, greeting);
            Assert.Equal("NBDMAGIC", System.Text.Encoding.ASCII.GetString(greeting, 0, 8));
            await rogue.SendAsync(new byte[4]); // client flags
            await rogue.SendAsync(new byte[16] { 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 7, 0, 0, 0, 0 }); // not IHAVEOPT
            var clock = Stopwatch.StartNew();
            var received = await rogue.ReceiveAsync(new byte[64]).WaitAsync(TimeSpan.FromSeconds(10));
            Assert.Equal(0, received); // closed, not left hanging
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5));
        }

        await using var volume = await store.OpenVolumeAsync("sturdy");
        await volume.WriteAsync(0, Pattern(3, Block));
        var read = new byte[Block];
        await volume.ReadAsync(0, read);
        Assert.Equal(Pattern(3, Block), read);
    }

    [Fact]
    public async Task ARequestOutsideTheVolumeIsAnsweredEinvalAndTheConnectionGoesOn()
    {
        await using var host = await ServiceHost.StartAsync(StoreRegistry.Open("memory", new Dictionary<string, string>()));
        await using var store = new RpcStore(new RpcStoreOptions(host.Endpoint));
        await store.CreateVolumeAsync(new CreateVolumeRequest("bounded", 1 << 20));
        var ticket = (await OpenAsync(host, "bounded", readWrite: true)).NbdExport;
        await using var client = await ConnectAsync(host, ticket + "#0");

        // The NBD client sends what it is asked (the device's checks are the volume's, not the wire's).
        var read = await Assert.ThrowsAsync<Engine.BlockBackendException>(async () => await client.ReadAsync(1 << 20, new byte[4096]));
        Assert.Equal(Engine.BlockBackendException.EINVAL, read.Errno);
        var write = await Assert.ThrowsAsync<Engine.BlockBackendException>(async () => await client.WriteAsync((1 << 20) - 4096, new byte[8192], fua: false));
        Assert.Equal(Engine.BlockBackendException.EINVAL, write.Errno);

        await client.WriteAsync(0, Pattern(4, 4096), fua: false);
        var back = new byte[4096];
        await client.ReadAsync(0, back);
        Assert.Equal(Pattern(4, 4096), back);
        Assert.DoesNotContain("failed unexpectedly", host.Logs.Text);
    }

    [Fact]
    public async Task RequestsLargerThanTheConnectionBuffersTravelWholeBetweenSmallOnes()
    {
        await using var host = await ServiceHost.StartAsync(StoreRegistry.Open("memory", new Dictionary<string, string>()));
        await using var store = new RpcStore(new RpcStoreOptions(host.Endpoint));
        await store.CreateVolumeAsync(new CreateVolumeRequest("roomy", 8 << 20));
        var ticket = (await OpenAsync(host, "roomy", readWrite: true)).NbdExport;
        await using var client = await ConnectAsync(host, ticket + "#0");

        // 1 MiB requests (the export's maximum) go out beside 4 KiB ones, all in flight at once.
        var large = Pattern(11, 1 << 20);
        var small = Pattern(12, 4096);
        var writes = new List<Task>();
        for (var i = 0; i < 4; i++)
        {
            writes.Add(client.WriteAsync((i + 1) * (1L << 20), large, fua: false).AsTask());
            writes.Add(client.WriteAsync(i * 4096L, small, fua: false).AsTask());
        }

        await Task.WhenAll(writes);
        var reads = new List<(Task Task, byte[] Into, byte[] Expected)>();
        for (var i = 0; i < 4; i++)
        {
            var bigInto = new byte[1 << 20];
            var smallInto = new byte[4096];
            reads.Add((client.ReadAsync((i + 1) * (1L << 20), bigInto).AsTask(), bigInto, large));
            reads.Add((client.ReadAsync(i * 4096L, smallInto).AsTask(), smallInto, small));
        }

        foreach (var (task, into, expected) in reads)
        {
            await task;
            Assert.Equal(expected, into);
        }
    }

    [QemuIoFact]
    public async Task AnIndependentNbdClientReadsAndWritesWithTheTicket()
    {
        await using var host = await ServiceHost.StartAsync(StoreRegistry.Open("memory", new Dictionary<string, string>()));
        await using var store = new RpcStore(new RpcStoreOptions(host.Endpoint));
        await store.CreateVolumeAsync(new CreateVolumeRequest("shared-bytes", 4 << 20));
        var ticket = (await OpenAsync(host, "shared-bytes", readWrite: true)).NbdExport;

        var uri = $"nbd://127.0.0.1:{host.Service.DataEndpoint!.Port}/{ticket}";
        var (code, output) = await RunAsync("/usr/bin/qemu-io", "-f", "raw", "-c", "write -P 0x5a 65536 131072", "-c", "flush", "-c", "read -P 0x5a 65536 131072", uri);
        Assert.True(code == 0, $"qemu-io exited {code}: {output}");
        Assert.Contains("read 131072/131072 bytes", output);

        await using var volume = await store.OpenVolumeAsync("shared-bytes", VolumeAccess.ReadOnly);
        var read = new byte[131072];
        await volume.ReadAsync(65536, read);
        Assert.All(read, b => Assert.Equal(0x5a, b));
    }

    private static async Task<Wire.OpenVolumeResponse> OpenAsync(ServiceHost host, string volumeId, bool readWrite)
    {
        using var channel = GrpcChannels.Create(host.Endpoint);
        return await channel.CallAsync<Wire.OpenVolumeRequest, Wire.OpenVolumeResponse>(
            BlockStoreProtocol.Method("OpenVolume"), new Wire.OpenVolumeRequest { VolumeId = volumeId, ReadWrite = readWrite });
    }

    private static Task<NbdClient> ConnectAsync(ServiceHost host, string export, bool readOnlyClient = false) =>
        NbdClient.ConnectAsync(new NbdClientOptions(GrpcEndpoint.Tcp("127.0.0.1", host.Service.DataEndpoint!.Port), export, Connections: 1, ReadOnly: readOnlyClient)
        {
            ExportLabel = "test volume",
            Reconnect = new NbdReconnectPolicy(TimeSpan.FromSeconds(1), TimeSpan.FromMilliseconds(20), TimeSpan.FromMilliseconds(100), 2),
        });

    private static async Task ReceiveExactlyAsync(Socket socket, byte[] buffer)
    {
        var got = 0;
        while (got < buffer.Length)
        {
            var n = await socket.ReceiveAsync(buffer.AsMemory(got));
            Assert.True(n > 0, "the server closed during its greeting");
            got += n;
        }
    }

    private static async Task<(int Code, string Output)> RunAsync(string program, params string[] args)
    {
        var start = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(60));
        return (process.ExitCode, await stdout + await stderr);
    }

    private static byte[] Pattern(int seed, int length)
    {
        var data = new byte[length];
        new Random(seed).NextBytes(data);
        return data;
    }
}

/// <summary>A test that needs qemu-io: skipped, saying how to install it, when the machine has none.</summary>
public sealed class QemuIoFactAttribute : FactAttribute
{
    public QemuIoFactAttribute()
    {
        if (!File.Exists("/usr/bin/qemu-io"))
        {
            Skip = "qemu-io is not installed (scripts/setup.sh installs qemu-utils; apt-get install qemu-utils)";
        }
    }
}
