using UblkCsi.Engine;
using UblkCsi.Stores.Nbd;
using UblkCsi.Stores.Tests.Conformance;
using UblkCsi.TestSupport;

namespace UblkCsi.Stores.Tests.Nbd;

/// <summary>
/// tls: on against real servers (nbdkit --tls=require, qemu-nbd --tls-creds) with certificates made in
/// the test: the right CA serves data, a wrong CA, a cleartext client and a server without TLS each fail
/// with a FAILED_PRECONDITION that says why, and no PEM text ever appears in a message.
/// </summary>
public sealed class NbdTlsTests : IDisposable
{
    private const long MiB = 1 << 20;
    private readonly string _dir = TempDirectory.Create("nbd-tls");
    private readonly TestCertificates _authority = TestCertificates.NewAuthority("nbd test CA");

    public NbdTlsTests()
    {
        // The file names nbdkit and qemu-nbd both look for in their certificate directory.
        using var server = _authority.IssueServer("nbd test server");
        File.WriteAllText(Path.Combine(_dir, "ca-cert.pem"), _authority.AuthorityPem);
        File.WriteAllText(Path.Combine(_dir, "server-cert.pem"), TestCertificates.CertificatePem(server));
        File.WriteAllText(Path.Combine(_dir, "server-key.pem"), TestCertificates.KeyPem(server));
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [NbdkitFact]
    public async Task NbdkitRequiringTlsServesDataToAClientTrustingItsCa()
    {
        await using var server = await NbdServerProcess.StartNbdkitAsync("--tls=require", $"--tls-certificates={_dir}", "memory", "size=16M");
        await using var store = OpenStore(server, "on", new() { ["caCert"] = _authority.AuthorityPem });
        Assert.EndsWith("tls=on", store.Description, StringComparison.Ordinal);
        await using var volume = await store.OpenVolumeAsync("disk");
        await NbdDataPathChecks.EdgesAsync(volume);
        await NbdDataPathChecks.RandomOperationsMatchModelAsync(volume, seed: 11, size: 16 * MiB, operations: 100);
        await NbdDataPathChecks.ConcurrentWritersAllLandAsync(volume);
    }

    [NbdkitFact]
    public async Task WrongCaCleartextAndAServerWithoutTlsFailClearly()
    {
        await using var tlsServer = await NbdServerProcess.StartNbdkitAsync("--tls=require", $"--tls-certificates={_dir}", "memory", "size=4M");
        var stranger = TestCertificates.NewAuthority("some other CA");
        await using (var store = OpenStore(tlsServer, "on", new() { ["caCert"] = stranger.AuthorityPem }))
        {
            var e = await Assert.ThrowsAsync<NbdRefusedException>(() => store.OpenVolumeAsync("disk"));
            Assert.Equal(StoreErrorCode.FailedPrecondition, e.Code);
            Assert.Contains("TLS handshake with", e.Message, StringComparison.Ordinal);
            Assert.Contains("is not signed by the configured CA (CA from caCert)", e.Message, StringComparison.Ordinal);
            Assert.DoesNotContain("BEGIN", e.Message, StringComparison.Ordinal);
        }

        await using (var cleartext = OpenStore(tlsServer, "off", []))
        {
            var e = await Assert.ThrowsAsync<NbdRefusedException>(() => cleartext.OpenVolumeAsync("disk"));
            Assert.Equal(StoreErrorCode.FailedPrecondition, e.Code);
            Assert.Contains("requires TLS; set the parameter tls to on", e.Message, StringComparison.Ordinal);
        }

        await using var plainServer = await NbdServerProcess.StartNbdkitAsync("--tls=off", "memory", "size=4M");
        await using var noFallback = OpenStore(plainServer, "on", new() { ["caCert"] = _authority.AuthorityPem });
        var refused = await Assert.ThrowsAsync<NbdRefusedException>(() => noFallback.OpenVolumeAsync("disk"));
        Assert.Equal(StoreErrorCode.FailedPrecondition, refused.Code);
        Assert.Contains("refused NBD_OPT_STARTTLS", refused.Message, StringComparison.Ordinal);
        Assert.Contains("never falls back to cleartext", refused.Message, StringComparison.Ordinal);
    }

    [NbdkitFact]
    public async Task ServerVerifyingClientsAcceptsTheClientCertificateFromSecretsOnly()
    {
        await using var server = await NbdServerProcess.StartNbdkitAsync("--tls=require", $"--tls-certificates={_dir}", "--tls-verify-peer", "memory", "size=4M");
        using var client = _authority.IssueClient("node-1");
        await using (var withCertificate = OpenStore(server, "on", new()
        {
            ["caCert"] = _authority.AuthorityPem,
            ["tlsCert"] = TestCertificates.CertificatePem(client),
            ["tlsKey"] = TestCertificates.KeyPem(client),
        }))
        {
            await using var volume = await withCertificate.OpenVolumeAsync("disk");
            await NbdDataPathChecks.EdgesAsync(volume);
        }

        await using var without = OpenStore(server, "on", new() { ["caCert"] = _authority.AuthorityPem });
        var e = await Assert.ThrowsAsync<StoreException>(() => without.OpenVolumeAsync("disk"));
        Assert.True(e.Code is StoreErrorCode.Unavailable or StoreErrorCode.FailedPrecondition, $"{e.Code}: {e.Message}");
    }

    [QemuNbdFact]
    public async Task QemuNbdWithTlsCredsOverAUnixSocketThroughTheSpec()
    {
        var image = Path.Combine(_dir, "disk.qcow2");
        await NbdServerProcess.CreateQcow2Async(image, "8M");
        var socket = Path.Combine(_dir, "nbd.sock");
        await using var server = await NbdServerProcess.StartQemuNbdAsync(image, "qcow2", "vol1", socket,
            "--object", $"tls-creds-x509,id=tls0,dir={_dir},endpoint=server,verify-peer=off", "--tls-creds", "tls0");
        var caFile = Path.Combine(_dir, "ca-cert.pem");

        // A unix socket has no host name: the certificate must name localhost.
        var spec = StoreSpec.Parse($"nbd+unix:///vol1?socket={socket}&tls=on&ca-file={caFile}");
        await using (var volume = await spec.OpenAsync())
        {
            Assert.Equal(8 * MiB, volume.Info.SizeBytes);
            await NbdDataPathChecks.RandomOperationsMatchModelAsync(volume, seed: 12, size: 8 * MiB, operations: 60);
        }

        var cleartext = await Assert.ThrowsAsync<NbdRefusedException>(() => StoreSpec.Parse($"nbd+unix:///vol1?socket={socket}").OpenAsync());
        Assert.Contains("requires TLS", cleartext.Message, StringComparison.Ordinal);
    }

    private static IVolumeStore OpenStore(NbdServerProcess server, string tls, Dictionary<string, string> secrets) =>
        StoreRegistry.Open("nbd", new Dictionary<string, string> { ["endpoint"] = server.Endpoint.ToString(), ["tls"] = tls }, secrets);
}
