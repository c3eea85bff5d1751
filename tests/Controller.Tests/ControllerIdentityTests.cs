using System.Reflection;
using Csi.V1;
using Grpc.Core;
using UblkCsi.GrpcHosting;
using UblkCsi.TestSupport;
using CapabilityType = Csi.V1.PluginCapability.Types.Service.Types.Type;

namespace UblkCsi.Controller.Tests;

/// <summary>The real controller host, in-process on a temp unix socket, called as kubelet and the sidecars call it.</summary>
public sealed class ControllerIdentityTests
{
    private static Task<TResponse> Call<TRequest, TResponse>(RunningHost host, string method, TRequest request)
        where TRequest : class, Google.Protobuf.IMessage<TRequest>
        where TResponse : class, Google.Protobuf.IMessage<TResponse>, new() =>
        host.CallAsync<TRequest, TResponse>(CsiServices.Identity.FindMethodByName(method), request, DateTime.UtcNow.AddSeconds(10));

    [Fact]
    public async Task GetPluginInfoReportsTheDriverNameAndAssemblyVersion()
    {
        await using var host = await RunningHost.StartAsync(ControllerHost.RunAsync, ["--driver-name", "ublk.csi.example.com"]);

        var info = await Call<GetPluginInfoRequest, GetPluginInfoResponse>(host, "GetPluginInfo", new GetPluginInfoRequest());

        Assert.Equal("ublk.csi.example.com", info.Name);
        var expected = typeof(ControllerHost).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()!.InformationalVersion;
        Assert.Equal(expected, info.VendorVersion);
        Assert.StartsWith("0.1.0", info.VendorVersion);
    }

    [Fact]
    public async Task DefaultDriverNameIsUblkCsiStorage()
    {
        await using var host = await RunningHost.StartAsync(ControllerHost.RunAsync, []);

        var info = await Call<GetPluginInfoRequest, GetPluginInfoResponse>(host, "GetPluginInfo", new GetPluginInfoRequest());

        Assert.Equal("ublk.csi.storage", info.Name);
    }

    [Fact]
    public async Task CapabilitiesAreControllerServiceAndTopology()
    {
        await using var host = await RunningHost.StartAsync(ControllerHost.RunAsync, []);

        var response = await Call<GetPluginCapabilitiesRequest, GetPluginCapabilitiesResponse>(host, "GetPluginCapabilities", new GetPluginCapabilitiesRequest());

        Assert.Equal(
            [CapabilityType.ControllerService, CapabilityType.VolumeAccessibilityConstraints],
            response.Capabilities.Select(c => c.Service.Type));
    }

    [Fact]
    public async Task ProbeIsReady()
    {
        await using var host = await RunningHost.StartAsync(ControllerHost.RunAsync, []);

        var probe = await Call<ProbeRequest, ProbeResponse>(host, "Probe", new ProbeRequest());

        Assert.True(probe.Ready);
    }

    [Fact]
    public async Task ControllerServiceIsServedOnTheSameEndpoint()
    {
        await using var host = await RunningHost.StartAsync(ControllerHost.RunAsync, []);

        var e = await Assert.ThrowsAsync<RpcException>(() => host.CallAsync<CreateVolumeRequest, CreateVolumeResponse>(
            CsiServices.Controller.FindMethodByName("CreateVolume"), new CreateVolumeRequest { Name = "pvc-1" }));

        Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
        Assert.Contains("volume_capabilities", e.Status.Detail);
    }

    [Fact]
    public async Task EnvironmentVariablesConfigureTheHostAndFlagsWin()
    {
        var directory = RunningHost.NewDirectory();
        var socket = Path.Combine(directory, "from-env.sock");
        var environment = new Dictionary<string, string?>
        {
            ["CSI_ENDPOINT"] = "unix://" + socket,
            ["DRIVER_NAME"] = "env.driver",
            ["LOG_LEVEL"] = "debug",
        };

        await using (var fromEnvironment = await RunningHost.StartAsync(ControllerHost.RunAsync, [], environment, directory, addEndpoint: false))
        {
            Assert.Equal(socket, fromEnvironment.SocketPath);
            var info = await Call<GetPluginInfoRequest, GetPluginInfoResponse>(fromEnvironment, "GetPluginInfo", new GetPluginInfoRequest());
            Assert.Equal("env.driver", info.Name);
        }

        await using var flagged = await RunningHost.StartAsync(ControllerHost.RunAsync, ["--driver-name", "flag.driver"], environment);
        Assert.Equal("flag.driver", (await Call<GetPluginInfoRequest, GetPluginInfoResponse>(flagged, "GetPluginInfo", new GetPluginInfoRequest())).Name);
    }

    [Fact]
    public async Task MaxMessageBytesLimitsRequests()
    {
        await using var host = await RunningHost.StartAsync(ControllerHost.RunAsync, ["--max-message-bytes", "1024"]);

        // A big message sent to GetPluginInfo: the limit applies before the request is even parsed.
        var oversized = new GetPluginInfoResponse { Name = new string('x', 4096) };
        var e = await Assert.ThrowsAsync<RpcException>(() =>
            host.CallAsync<GetPluginInfoResponse, GetPluginInfoResponse>(CsiServices.Identity.FindMethodByName("GetPluginInfo"), oversized));

        Assert.Equal(StatusCode.ResourceExhausted, e.StatusCode);
    }

    [Fact]
    public async Task CallsAreLoggedWithMethodAndStatus()
    {
        await using var host = await RunningHost.StartAsync(ControllerHost.RunAsync, []);

        await Call<ProbeRequest, ProbeResponse>(host, "Probe", new ProbeRequest());

        Assert.Contains(host.Logs.Entries, e => e.Message.Contains("rpc /csi.v1.Identity/Probe OK", StringComparison.Ordinal));
    }

    [Fact]
    public void IdentityImplementsEveryIdentityRpc() =>
        Assert.Equal(["GetPluginCapabilities", "GetPluginInfo", "Probe"], ServiceOverrides.Of(typeof(IdentityService)));
}
