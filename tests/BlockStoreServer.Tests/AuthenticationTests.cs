using UblkCsi.GrpcEndpoints;
using Grpc.Core;
using UblkCsi.TestSupport;
using UblkCsi.BlockStoreServer.Tests.Support;
using UblkCsi.Engine;
using UblkCsi.GrpcHosting;
using UblkCsi.Stores;
using UblkCsi.Stores.Rpc;

namespace UblkCsi.BlockStoreServer.Tests;

/// <summary>The shared token: required on every call, compared exactly, never logged.</summary>
public sealed class AuthenticationTests
{
    private const string Token = "s3cr3t-T0ken-4d1c9e";
    private static readonly RpcRetryPolicy NoRetry = new(1, TimeSpan.Zero, TimeSpan.Zero);

    [Fact]
    public async Task CallsWithoutTheRightTokenAreRefusedAndTheTokenNeverReachesTheLogs()
    {
        var root = TestPaths.NewDirectory("auth");
        var tokenFile = TestPaths.WriteTokenFile(root, Token);
        await using var host = await InProcessHost.StartAsync(["--listen", "tcp://127.0.0.1:0", "--root", root, "--token-file", tokenFile, "--log-level", "trace"]);

        await using (var good = new RpcStore(new RpcStoreOptions(host.Endpoint, Token)))
        {
            var volume = await good.CreateVolumeAsync(new CreateVolumeRequest("guarded", 1 << 20));
            await using var backend = await good.OpenVolumeAsync(volume.Id);
            await backend.WriteAsync(0, new byte[4096]);
        }

        foreach (var wrong in new[] { null, "s3cr3t-T0ken-4d1c9", Token + "x", "wrong-token-value" })
        {
            await using var store = new RpcStore(new RpcStoreOptions(host.Endpoint, wrong, NoRetry));
            var e = await Assert.ThrowsAsync<StoreParameterException>(() => store.GetVolumeAsync("guarded"));
            Assert.Equal("token", e.ParameterName);
            Assert.Contains("refused the call", e.Message);
            if (wrong is not null)
            {
                Assert.DoesNotContain(wrong, e.Message);
            }
        }

        // Opening a volume needs the token too.
        await using (var store = new RpcStore(new RpcStoreOptions(host.Endpoint, "wrong-token-value", NoRetry)))
        {
            await Assert.ThrowsAsync<StoreParameterException>(() => store.OpenVolumeAsync("guarded"));
        }

        Assert.Equal(0, await host.StopAsync());
        var logs = host.Logs.Text;
        Assert.Contains("Unauthenticated", logs);            // the refused calls are logged...
        Assert.DoesNotContain("s3cr3t-T0ken", logs);          // ...but no token, right or wrong, ever is
        Assert.DoesNotContain("wrong-token-value", logs);
    }

    [Fact]
    public async Task ServerWithoutTokenOnAllInterfacesWarns()
    {
        var root = TestPaths.NewDirectory("open");
        await using var host = await InProcessHost.StartAsync(["--listen", "tcp://0.0.0.0:0", "--root", root]);

        Assert.Contains("reachable from other hosts and no --token-file is set", host.Logs.Text);
    }

    [Fact]
    public async Task GroupReadableTokenFileWarns()
    {
        var root = TestPaths.NewDirectory("mode");
        var tokenFile = TestPaths.WriteTokenFile(root, Token);
        File.SetUnixFileMode(tokenFile, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead);
        await using var host = await InProcessHost.StartAsync(["--listen", "tcp://127.0.0.1:0", "--root", root, "--token-file", tokenFile]);

        Assert.Contains("is readable by group or others", host.Logs.Text);
        Assert.DoesNotContain(Token, host.Logs.Text);
    }

    [Fact]
    public async Task DataPathCallsWithAWrongTokenFailWithEio()
    {
        var store = StoreRegistry.Open("memory", new Dictionary<string, string>());
        await using var host = await ServiceHost.StartAsync(store, Token);
        await using var good = new RpcStore(new RpcStoreOptions(host.Endpoint, Token));
        await good.CreateVolumeAsync(new CreateVolumeRequest("data", 1 << 20));
        await using var backend = await good.OpenVolumeAsync("data");

        // The same volume, addressed by a client holding a different token.
        using var client = GrpcChannels.Create(host.Endpoint);
        var badToken = new Metadata { { "authorization", "Bearer nope" } };
        var e = await Assert.ThrowsAsync<RpcException>(() => client.CallAsync<BlockStore.V1.ReadRequest, BlockStore.V1.ReadResponse>(
            BlockStoreProtocol.Method("Read"), new BlockStore.V1.ReadRequest { VolumeId = "data", Offset = 0, Length = 4096 }, headers: badToken));
        Assert.Equal(StatusCode.Unauthenticated, e.StatusCode);
        Assert.DoesNotContain("nope", host.Logs.Text);

        await backend.ReadAsync(0, new byte[4096]); // the right token still works
        Assert.True((backend.Info.Features & BlockBackendFeatures.ReadOnly) == 0);
    }
}
