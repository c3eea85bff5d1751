using UblkCsi.Stores.Nbd;

namespace UblkCsi.Stores.Tests.Nbd;

/// <summary>The nbd store's parameters, specs and control path (static provisioning: everything but open is refused, clearly).</summary>
public sealed class NbdStoreContractTests
{
    private static readonly Dictionary<string, string> NoSecrets = [];

    [Fact]
    public async Task ControlPathSaysToUseAStaticPersistentVolume()
    {
        await using var store = StoreRegistry.Open("nbd", new Dictionary<string, string> { ["endpoint"] = "tcp://127.0.0.1:10809", ["export"] = "disk1" });
        Assert.Equal("nbd endpoint=tcp://127.0.0.1:10809 export=disk1", store.Description);
        var create = await Assert.ThrowsAsync<StoreException>(() => store.CreateVolumeAsync(new CreateVolumeRequest("pvc-1", 1 << 30)));
        Assert.Equal(StoreErrorCode.InvalidArgument, create.Code);
        Assert.Contains("provisioned statically", create.Message, StringComparison.Ordinal);
        Assert.Contains("PersistentVolume", create.Message, StringComparison.Ordinal);
        var expand = await Assert.ThrowsAsync<StoreException>(() => store.ExpandVolumeAsync("pvc-1", 2L << 30));
        Assert.Equal(StoreErrorCode.InvalidArgument, expand.Code);
        Assert.Contains("does not resize exports", expand.Message, StringComparison.Ordinal);
        var snapshot = await Assert.ThrowsAsync<StoreException>(() => store.CreateSnapshotAsync("pvc-1", "snap"));
        Assert.Equal(StoreErrorCode.InvalidArgument, snapshot.Code);
        Assert.Contains("no snapshots or clones", snapshot.Message, StringComparison.Ordinal);
        var delete = await Assert.ThrowsAsync<StoreException>(() => store.DeleteVolumeAsync("pvc-1"));
        Assert.Equal(StoreErrorCode.FailedPrecondition, delete.Code);
        Assert.Contains("Retain", delete.Message, StringComparison.Ordinal);
        Assert.Empty(await store.ListVolumesAsync());
        Assert.Equal(0, (await store.GetCapacityAsync()).AvailableBytes);
        Assert.Equal("disk1", ((NbdStore)store).ExportFor("any-handle"));
    }

    [Fact]
    public async Task UnreachableServerIsUnavailableNamingIt()
    {
        await using var store = StoreRegistry.Open("nbd", new Dictionary<string, string> { ["endpoint"] = $"tcp://127.0.0.1:{NbdServerProcess.FreePort()}" });
        var e = await Assert.ThrowsAsync<StoreException>(() => store.OpenVolumeAsync("vol"));
        Assert.Equal(StoreErrorCode.Unavailable, e.Code);
        Assert.Contains("cannot connect", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("", "", "endpoint", "is required")]
    [InlineData("http://127.0.0.1:10809", "", "endpoint", "unsupported scheme")]
    [InlineData("tcp://127.0.0.1:0", "", "endpoint", "needs a port")]
    [InlineData("unix://relative.sock", "", "endpoint", "absolute")]
    [InlineData("tcp://127.0.0.1:10809", "caFile=/dev/null", "caFile", "set tls: on to use TLS")]
    [InlineData("tcp://127.0.0.1:10809", "tls=maybe", "tls", "allowed: off, on")]
    [InlineData("tcp://127.0.0.1:10809", "connections=0", "connections", "from 1 to 16")]
    [InlineData("tcp://127.0.0.1:10809", "connections=17", "connections", "from 1 to 16")]
    [InlineData("tcp://127.0.0.1:10809", "size=1G", "size", "unknown parameters key; allowed: caFile, connections, endpoint, export, tls")]
    public void BadParametersNameTheParameter(string endpoint, string extra, string parameter, string says)
    {
        var parameters = new Dictionary<string, string>();
        if (endpoint.Length > 0)
        {
            parameters["endpoint"] = endpoint;
        }

        if (extra.Length > 0)
        {
            parameters[extra.Split('=')[0]] = extra.Split('=')[1];
        }

        var e = Assert.Throws<StoreParameterException>(() => StoreRegistry.Open("nbd", parameters, NoSecrets));
        Assert.Equal(parameter, e.ParameterName);
        Assert.Contains(says, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void SecretsAreRefusedWithoutQuotingThem()
    {
        var e = Assert.Throws<StoreParameterException>(() => StoreRegistry.Open("nbd",
            new Dictionary<string, string> { ["endpoint"] = "tcp://h:1" }, new Dictionary<string, string> { ["password"] = "hunter2-secret" }));
        Assert.Equal("password", e.ParameterName);
        Assert.DoesNotContain("hunter2", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("off", "caCert", "caCert", "set tls: on")]
    [InlineData("on", "tlsCert", "tlsKey", "tlsCert and tlsKey go together")]
    [InlineData("on", "caCert", "caCert", "PEM certificate")]
    public void TlsSecretsAreCheckedWithoutQuotingThem(string tls, string secret, string parameter, string says)
    {
        var e = Assert.Throws<StoreParameterException>(() => StoreRegistry.Open("nbd",
            new Dictionary<string, string> { ["endpoint"] = "tcp://h:1", ["tls"] = tls }, new Dictionary<string, string> { [secret] = "-----BEGIN CERTIFICATE-----hunter2-secret" }));
        Assert.Equal(parameter, e.ParameterName);
        Assert.Contains(says, e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("hunter2", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("nbd://127.0.0.1/disk", "nbd://127.0.0.1:10809/disk")]
    [InlineData("nbd://storage.example:10810/", "nbd://storage.example:10810/")]
    [InlineData("nbd://[::1]:10809/a%20b", "nbd://[::1]:10809/a%20b")]
    [InlineData("nbd://h:1/x?connections=4", "nbd://h:1/x?connections=4")]
    [InlineData("nbd://h:1/x?tls=on", "nbd://h:1/x?tls=on")]
    [InlineData("nbd+unix:///vol1?socket=/run/nbd.sock", "nbd+unix:///vol1?socket=%2Frun%2Fnbd.sock")]
    public void SpecsAreCanonical(string text, string canonical)
    {
        var spec = StoreSpec.Parse(text);
        Assert.Equal(canonical, spec.ToString());
        Assert.Equal(canonical, StoreSpec.Parse(spec.ToString()).ToString());
    }

    [Theory]
    [InlineData("nbd:///disk", "spec")]
    [InlineData("nbd://h:0/disk", "spec")]
    [InlineData("nbd+unix:///vol1", "socket")]
    [InlineData("nbd+unix://h/vol1?socket=/s", "spec")]
    [InlineData("nbd+unix:///v?socket=relative", "endpoint")]
    [InlineData("nbd://h/x?tls=yes", "tls")]
    [InlineData("nbd://h/x?ca-file=/etc/nbd/ca.pem", "ca-file")]
    [InlineData("nbd://h/x?tls=on&ca-file=relative.pem", "ca-file")]
    [InlineData("nbd://h/x?token=1", "token")]
    public void BadSpecsNameWhatIsWrong(string text, string parameter)
    {
        var e = Assert.Throws<StoreParameterException>(() => StoreSpec.Parse(text));
        Assert.Equal(parameter, e.ParameterName);
    }

    [Fact]
    public void UnixSchemeIsNotAStorageClassType()
    {
        var e = Assert.Throws<StoreParameterException>(() => StoreRegistry.Open("nbd+unix", new Dictionary<string, string> { ["endpoint"] = "unix:///s" }));
        Assert.Contains("StorageClasses use store: nbd", e.Message, StringComparison.Ordinal);
    }
}
