using Microsoft.Extensions.Logging.Abstractions;
using UblkCsi.BlockStoreServer.Tests.Support;
using UblkCsi.GrpcHosting;
using UblkCsi.Stores;
using UblkCsi.Stores.Rpc;
using UblkCsi.TestSupport;

namespace UblkCsi.BlockStoreServer.Tests;

/// <summary>
/// The block-store protocol off the loopback: TLS with a private CA over real sockets, client certificates,
/// the errors a misconfigured client gets, and the rule that a token never travels in cleartext to
/// another machine unless the StorageClass says so.
/// </summary>
public sealed class TlsTests
{
    private const string Token = "tls-test-token-5c1e";

    [Fact]
    public async Task AServerSignedByTheConfiguredCaServesVolumesOverTls()
    {
        var ca = TestCertificates.NewAuthority("block-store test CA");
        var serverCertificate = ca.IssueServer();
        await using var host = await StartAsync(serverCertificate, token: Token);
        await using var store = Open(host, new() { ["caCert"] = ca.AuthorityPem, ["token"] = Token });

        await store.CreateVolumeAsync(new CreateVolumeRequest("secure", 1 << 20));
        await using var volume = await store.OpenVolumeAsync("secure");
        var data = Enumerable.Range(0, 64 * 1024).Select(i => (byte)(i * 7)).ToArray();
        await volume.WriteAsync(4096, data);
        var read = new byte[data.Length];
        await volume.ReadAsync(4096, read);
        Assert.Equal(data, read);
    }

    [Fact]
    public async Task AServerCertificateFromAnotherCaIsRefusedWithAClearError()
    {
        var trusted = TestCertificates.NewAuthority("the CA the StorageClass names");
        var other = TestCertificates.NewAuthority("some other CA");
        await using var host = await StartAsync(other.IssueServer());
        await using var store = Open(host, new() { ["caCert"] = trusted.AuthorityPem });

        var e = await Assert.ThrowsAsync<StoreException>(() => store.GetCapacityAsync());
        Assert.Equal(StoreErrorCode.FailedPrecondition, e.Code);
        Assert.Contains("TLS handshake with block-store server", e.Message);
        Assert.Contains("is not signed by the configured CA", e.Message);
        Assert.Contains("caCert", e.Message);
    }

    [Fact]
    public async Task AnExpiredServerCertificateIsRefusedWithAClearError()
    {
        var ca = TestCertificates.NewAuthority("block-store test CA");
        var expired = ca.IssueServer(notBefore: DateTimeOffset.UtcNow.AddDays(-10), notAfter: DateTimeOffset.UtcNow.AddDays(-2));
        await using var host = await StartAsync(expired);
        await using var store = Open(host, new() { ["caCert"] = ca.AuthorityPem });

        var e = await Assert.ThrowsAsync<StoreException>(() => store.GetCapacityAsync());
        Assert.Equal(StoreErrorCode.FailedPrecondition, e.Code);
        Assert.Contains($"expired on {expired.NotAfter.ToUniversalTime():yyyy-MM-dd}", e.Message);
    }

    [Fact]
    public void ATokenInCleartextToAnotherMachineIsRefusedNamingTheInsecureParameter()
    {
        var parameters = new Dictionary<string, string> { ["endpoint"] = "tcp://192.0.2.10:9400" };
        var secrets = new Dictionary<string, string> { ["token"] = Token };

        var e = Assert.Throws<StoreParameterException>(() => RpcStoreProvider.Instance.OpenStore(parameters, secrets));
        Assert.Equal("insecure", e.ParameterName);
        Assert.Contains("cleartext", e.Message);
        Assert.Contains("tls: \"true\"", e.Message);
        Assert.DoesNotContain(Token, e.Message);

        // Allowed when the StorageClass says so, with TLS, or on the loopback.
        using var allowed = Disposable(RpcStoreProvider.Instance.OpenStore(new Dictionary<string, string>(parameters) { ["insecure"] = "true" }, secrets));
        using var loopback = Disposable(RpcStoreProvider.Instance.OpenStore(new Dictionary<string, string> { ["endpoint"] = "tcp://127.0.0.1:9400" }, secrets));
        using var tls = Disposable(RpcStoreProvider.Instance.OpenStore(new Dictionary<string, string>(parameters) { ["tls"] = "true" }, secrets));
    }

    [Fact]
    public async Task AnInsecureVolumeLogsOneWarningWithoutTheToken()
    {
        // The machine's own name counts as another machine (only localhost and loopback addresses are
        // local), and usually resolves to the loopback, where the test server listens.
        var name = System.Net.Dns.GetHostName();
        if (!(await System.Net.Dns.GetHostAddressesAsync(name)).Contains(System.Net.IPAddress.Loopback))
        {
            return; // this machine's name does not lead to the loopback: nothing to connect to
        }

        await using var host = await ServiceHost.StartAsync(StoreRegistry.Open("memory", new Dictionary<string, string>()), Token);
        var logs = new CapturedLogs();
        using var loggers = Microsoft.Extensions.Logging.LoggerFactory.Create(logs.AddTo);
        var provider = new RpcStoreProvider(loggers);
        var parameters = new Dictionary<string, string> { ["endpoint"] = $"tcp://{name}:{host.Endpoint.Port}", ["insecure"] = "true" };
        await using var store = provider.OpenStore(parameters, new Dictionary<string, string> { ["token"] = Token });
        await store.CreateVolumeAsync(new CreateVolumeRequest("plain", 1 << 20));
        await using (var volume = await store.OpenVolumeAsync("plain"))
        {
            await volume.WriteAsync(0, new byte[4096]);
        }

        Assert.Single(logs.Text.Split('\n'), l => l.Contains("travels in cleartext", StringComparison.Ordinal) && l.Contains("plain", StringComparison.Ordinal));
        Assert.DoesNotContain(Token, logs.Text);
    }

    [Fact]
    public async Task AServerRequiringClientCertificatesRefusesAClientWithoutOneAndServesOneWithIt()
    {
        var ca = TestCertificates.NewAuthority("block-store test CA");
        var clients = TestCertificates.NewAuthority("node client CA");
        await using var host = await StartAsync(ca.IssueServer(), clientAuthorities: clients);

        await using (var anonymous = Open(host, new() { ["caCert"] = ca.AuthorityPem }))
        {
            var e = await Assert.ThrowsAnyAsync<Exception>(() => anonymous.GetCapacityAsync());
            Assert.IsNotType<StoreParameterException>(e);
        }

        var client = clients.IssueClient();
        await using var store = Open(host, new()
        {
            ["caCert"] = ca.AuthorityPem,
            ["tlsCert"] = TestCertificates.CertificatePem(client),
            ["tlsKey"] = TestCertificates.KeyPem(client),
        });
        await store.CreateVolumeAsync(new CreateVolumeRequest("mutual", 1 << 20));
        await using var volume = await store.OpenVolumeAsync("mutual");
        await volume.WriteAsync(0, new byte[4096]);
    }

    [Fact]
    public void TlsSettingsWithoutTlsOrHalfAPairNameTheParameter()
    {
        var ca = TestCertificates.NewAuthority("block-store test CA");
        var parameters = new Dictionary<string, string> { ["endpoint"] = "tcp://127.0.0.1:9400" };
        Assert.Equal("caCert", Assert.Throws<StoreParameterException>(() => RpcStoreProvider.Instance.OpenStore(parameters, new Dictionary<string, string> { ["caCert"] = ca.AuthorityPem })).ParameterName);
        var tls = new Dictionary<string, string>(parameters) { ["tls"] = "true" };
        Assert.Equal("tlsKey", Assert.Throws<StoreParameterException>(() => RpcStoreProvider.Instance.OpenStore(tls, new Dictionary<string, string> { ["tlsCert"] = ca.AuthorityPem })).ParameterName);
        Assert.Equal("caCert", Assert.Throws<StoreParameterException>(() => RpcStoreProvider.Instance.OpenStore(tls, new Dictionary<string, string> { ["caCert"] = "not a certificate" })).ParameterName);
    }

    [Fact]
    public async Task ARenewedCertificateOnDiskIsServedWithoutARestart()
    {
        var ca = TestCertificates.NewAuthority("block-store test CA");
        var directory = Directory.CreateTempSubdirectory("tls-reload");
        try
        {
            var certPath = Path.Combine(directory.FullName, "tls.crt");
            var keyPath = Path.Combine(directory.FullName, "tls.key");
            var first = ca.IssueServer("first");
            await WritePairAsync(first, certPath, keyPath);
            var files = new PemCertificateFiles(certPath, keyPath, NullLogger.Instance);
            Assert.Equal(first.Thumbprint, files.Current.Thumbprint);

            var second = ca.IssueServer("second");
            await WritePairAsync(second, certPath, keyPath);
            File.SetLastWriteTimeUtc(certPath, DateTime.UtcNow.AddSeconds(5));
            await Task.Delay(1100);
            Assert.Equal(second.Thumbprint, files.Current.Thumbprint);

            // A broken pair on disk keeps the last good certificate in service.
            await File.WriteAllTextAsync(keyPath, "garbage");
            File.SetLastWriteTimeUtc(keyPath, DateTime.UtcNow.AddSeconds(10));
            await Task.Delay(1100);
            Assert.Equal(second.Thumbprint, files.Current.Thumbprint);
        }
        finally
        {
            directory.Delete(recursive: true);
        }
    }

    [Fact]
    public async Task TheServerProcessServesTlsFromPemFilesAndTheStoreTrustsACaFile()
    {
        var ca = TestCertificates.NewAuthority("block-store test CA");
        var directory = Directory.CreateTempSubdirectory("tls-process");
        try
        {
            var certPath = Path.Combine(directory.FullName, "tls.crt");
            var keyPath = Path.Combine(directory.FullName, "tls.key");
            var caPath = Path.Combine(directory.FullName, "ca.crt");
            await WritePairAsync(ca.IssueServer(), certPath, keyPath);
            await File.WriteAllTextAsync(caPath, ca.AuthorityPem);
            using var server = await ServerProcess.StartOnFreePortsAsync(
                "--root", TestPaths.NewDirectory("tls-process"), "--tls-cert-file", certPath, "--tls-key-file", keyPath);
            var port = server.Port;

            await using var store = RpcStoreProvider.Instance.OpenStore(
                new Dictionary<string, string> { ["endpoint"] = $"tcp://127.0.0.1:{port}", ["tls"] = "true", ["caFile"] = caPath },
                new Dictionary<string, string>());
            await store.CreateVolumeAsync(new CreateVolumeRequest("from-files", 1 << 20));
            await using (var volume = await store.OpenVolumeAsync("from-files"))
            {
                await volume.WriteAsync(0, new byte[8192]);
            }

            Assert.Contains("over TLS", server.Output);
        }
        finally
        {
            directory.Delete(recursive: true);
        }
    }

    [Fact]
    public async Task TheOperatorSpecOpensATlsVolumeWithACaFileAndRefusesACleartextTokenOffTheMachine()
    {
        var ca = TestCertificates.NewAuthority("block-store test CA");
        await using var host = await StartAsync(ca.IssueServer(), token: Token);
        var directory = Directory.CreateTempSubdirectory("tls-spec");
        try
        {
            var caPath = Path.Combine(directory.FullName, "ca.crt");
            await File.WriteAllTextAsync(caPath, ca.AuthorityPem);
            var tokenPath = Path.Combine(directory.FullName, "token");
            await File.WriteAllTextAsync(tokenPath, Token);

            var spec = StoreSpec.Parse($"rpc://127.0.0.1:{host.Endpoint.Port}/by-spec?tls=true&ca-file={caPath}&token-file={tokenPath}");
            await using (var volume = await spec.OpenAsync(new StoreSpecOpenOptions(SizeBytes: 1 << 20)))
            {
                await volume.WriteAsync(0, new byte[4096]);
            }

            var remote = StoreSpec.Parse($"rpc://192.0.2.10:9400/by-spec?token-file={tokenPath}");
            Assert.Equal("insecure", (await Assert.ThrowsAsync<StoreParameterException>(() => remote.OpenAsync())).ParameterName);
        }
        finally
        {
            directory.Delete(recursive: true);
        }
    }

    private static async Task WritePairAsync(System.Security.Cryptography.X509Certificates.X509Certificate2 certificate, string certPath, string keyPath)
    {
        await File.WriteAllTextAsync(certPath, TestCertificates.CertificatePem(certificate));
        await File.WriteAllTextAsync(keyPath, TestCertificates.KeyPem(certificate));
    }

    private static Task<ServiceHost> StartAsync(System.Security.Cryptography.X509Certificates.X509Certificate2 certificate, string? token = null, TestCertificates? clientAuthorities = null) =>
        ServiceHost.StartAsync(StoreRegistry.Open("memory", new Dictionary<string, string>()), token, tls: new GrpcServerTls
        {
            ServerCertificate = () => certificate,
            ClientCertificateAuthorities = clientAuthorities is null ? null : [clientAuthorities.Authority],
        });

    private static IVolumeStore Open(ServiceHost host, Dictionary<string, string> secrets) =>
        RpcStoreProvider.Instance.OpenStore(
            new Dictionary<string, string> { ["endpoint"] = host.Endpoint.ToString(), ["tls"] = "true", ["retryAttempts"] = "2" },
            secrets);

    private static IDisposable Disposable(IVolumeStore store) => new StoreDisposer(store);

    private sealed class StoreDisposer(IVolumeStore store) : IDisposable
    {
        public void Dispose() => store.DisposeAsync().AsTask().GetAwaiter().GetResult();
    }
}
