using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using UblkCsi.GrpcEndpoints;

namespace UblkCsi.Stores.Rpc;

/// <summary>TLS toward a server: a block-store server (rpc store) or an NBD server (nbd store).</summary>
/// <param name="Authorities">The CAs the server's certificate must chain to, or null for the system's trust store.</param>
/// <param name="ClientCertificate">The certificate (with key) to present when the server asks for one, or null.</param>
/// <param name="AuthoritySource">Where <paramref name="Authorities"/> came from (a parameter name), for error messages.</param>
public sealed record RpcTls(X509Certificate2Collection? Authorities = null, X509Certificate2? ClientCertificate = null, string AuthoritySource = "the system trust store");

/// <summary>
/// Verifies a server's certificate during the handshake and remembers why it refused one, so
/// the caller gets "certificate ... expired on ..." instead of the transport's generic handshake failure.
/// </summary>
internal sealed class ServerCertificateCheck(RpcTls tls, string host)
{
    private volatile string? _lastProblem;

    /// <summary>Why the last certificate was refused, in words, or null when none was.</summary>
    public string? LastProblem => _lastProblem;

    /// <summary>The client side of the handshake: SNI and name check on <paramref name="host"/>, chain check against the configured CAs.</summary>
    public SslClientAuthenticationOptions ClientOptions() => new()
    {
        TargetHost = host,
        ClientCertificates = tls.ClientCertificate is null ? null : [tls.ClientCertificate],
        RemoteCertificateValidationCallback = Verify,
    };

    /// <summary>
    /// The TLS failure behind <paramref name="e"/>, as a FAILED_PRECONDITION that names the cause, or null
    /// when the call did not fail in the handshake. A refused certificate is not retried: it will not change
    /// by itself within the retry budget.
    /// </summary>
    public Grpc.Core.RpcException? AsHandshakeFailure(Grpc.Core.RpcException e, string server)
    {
        for (Exception? inner = e.Status.DebugException; inner is not null; inner = inner.InnerException)
        {
            if (inner is AuthenticationException)
            {
                var reason = _lastProblem ?? inner.Message;
                return new Grpc.Core.RpcException(new Grpc.Core.Status(
                    Grpc.Core.StatusCode.FailedPrecondition, $"TLS handshake with block-store server {server} failed: {reason}"));
            }
        }

        return null;
    }

    private bool Verify(object sender, X509Certificate? certificate, X509Chain? chain, SslPolicyErrors errors)
    {
        if (certificate is null)
        {
            return Refuse("the server presented no certificate");
        }

        if ((errors & SslPolicyErrors.RemoteCertificateNameMismatch) != 0)
        {
            return Refuse($"certificate '{certificate.Subject}' does not name '{host}' (subject alternative names must list it)");
        }

        if (tls.Authorities is null)
        {
            return errors == SslPolicyErrors.None || Refuse($"certificate '{certificate.Subject}' is not trusted by {tls.AuthoritySource}: {errors}");
        }

        using var presented = new X509Certificate2(certificate);
        return CertificateChains.TryVerify(presented, tls.Authorities, chain?.ChainPolicy.ExtraStore, out var problem)
            || Refuse($"{problem} (CA from {tls.AuthoritySource})");
    }

    private bool Refuse(string problem)
    {
        _lastProblem = problem;
        return false;
    }
}
