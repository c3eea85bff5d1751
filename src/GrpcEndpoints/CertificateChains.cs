using System.Security.Cryptography.X509Certificates;

namespace UblkCsi.GrpcEndpoints;

/// <summary>
/// Verifies a peer's certificate against a private CA (the roots given, not the system's), so a block-store
/// server or client can be pinned to the CA that issued its certificates. Revocation is not checked: a
/// private CA here publishes no CRL; rotate by replacing the certificate files.
/// </summary>
public static class CertificateChains
{
    /// <summary>
    /// True when <paramref name="certificate"/> chains to one of <paramref name="roots"/> and is valid now;
    /// otherwise <paramref name="problem"/> says why in words (expired, not yet valid, unknown issuer, ...).
    /// </summary>
    public static bool TryVerify(X509Certificate2 certificate, X509Certificate2Collection roots, X509Certificate2Collection? intermediates, out string problem)
    {
        ArgumentNullException.ThrowIfNull(certificate);
        ArgumentNullException.ThrowIfNull(roots);
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.AddRange(roots);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        if (intermediates is not null)
        {
            chain.ChainPolicy.ExtraStore.AddRange(intermediates);
        }

        if (chain.Build(certificate))
        {
            problem = "";
            return true;
        }

        problem = Describe(certificate, chain);
        return false;
    }

    private static string Describe(X509Certificate2 certificate, X509Chain chain)
    {
        var flags = X509ChainStatusFlags.NoError;
        foreach (var status in chain.ChainStatus)
        {
            flags |= status.Status;
        }

        var subject = certificate.Subject;
        var now = DateTime.Now;
        if ((flags & X509ChainStatusFlags.NotTimeValid) != 0)
        {
            return certificate.NotAfter < now
                ? $"certificate '{subject}' expired on {certificate.NotAfter.ToUniversalTime():yyyy-MM-dd HH:mm:ss} UTC"
                : certificate.NotBefore > now
                    ? $"certificate '{subject}' is not valid before {certificate.NotBefore.ToUniversalTime():yyyy-MM-dd HH:mm:ss} UTC"
                    : $"a certificate in the chain of '{subject}' is expired or not yet valid";
        }

        if ((flags & (X509ChainStatusFlags.UntrustedRoot | X509ChainStatusFlags.PartialChain)) != 0)
        {
            return $"certificate '{subject}' (issuer '{certificate.Issuer}') is not signed by the configured CA";
        }

        return $"certificate '{subject}' is not valid: {string.Join(", ", chain.ChainStatus.Select(s => s.Status))}";
    }
}
