using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace UblkCsi.Stores.Rpc;

/// <summary>The names under which TLS settings arrived (StorageClass parameters and secrets, or spec options), for error messages.</summary>
/// <param name="TlsOn">The value of <paramref name="Tls"/> that turns TLS on, as the user writes it.</param>
internal sealed record RpcTlsSource(string Tls, string CaFile, string CaCert, string ClientCert, string ClientKey, string TlsOn = "\"true\"");

/// <summary>Turns PEM text from parameters, secrets or files into <see cref="RpcTls"/>; every error names where the bad value came from and never quotes it.</summary>
internal static class RpcTlsMaterial
{
    /// <summary>
    /// The TLS settings, or null when <paramref name="enabled"/> is false (then no TLS value may be given).
    /// <paramref name="caFromFile"/> and <paramref name="caPem"/> are exclusive; the client certificate and key go together.
    /// </summary>
    public static RpcTls? Build(bool enabled, RpcTlsSource names, string? caFromFile, string caFromFileName, string? caPem, string? clientCertPem, string? clientKeyPem)
    {
        if (!enabled)
        {
            var stray = caFromFile is not null ? names.CaFile : caPem is not null ? names.CaCert : clientCertPem is not null ? names.ClientCert : clientKeyPem is not null ? names.ClientKey : null;
            return stray is null ? null : throw new StoreParameterException(stray, $"is a TLS setting; set {names.Tls}: {names.TlsOn} to use TLS");
        }

        if (caFromFile is not null && caPem is not null)
        {
            throw new StoreParameterException(names.CaCert, $"give the CA either as {names.CaCert} or as {names.CaFile}, not both");
        }

        if ((clientCertPem is null) != (clientKeyPem is null))
        {
            throw new StoreParameterException(clientCertPem is null ? names.ClientCert : names.ClientKey, $"{names.ClientCert} and {names.ClientKey} go together");
        }

        var caText = caFromFile ?? caPem;
        var caName = caFromFile is not null ? caFromFileName : names.CaCert;
        X509Certificate2Collection? authorities = null;
        if (caText is not null)
        {
            authorities = [];
            try
            {
                authorities.ImportFromPem(caText);
            }
            catch (CryptographicException)
            {
                throw new StoreParameterException(caName, "is not a PEM certificate bundle");
            }

            if (authorities.Count == 0)
            {
                throw new StoreParameterException(caName, "holds no PEM certificate (-----BEGIN CERTIFICATE-----)");
            }
        }

        X509Certificate2? client = null;
        if (clientCertPem is not null)
        {
            try
            {
                client = X509Certificate2.CreateFromPem(clientCertPem, clientKeyPem);
            }
            catch (CryptographicException)
            {
                throw new StoreParameterException(names.ClientCert, $"{names.ClientCert} and {names.ClientKey} must be a PEM certificate and its PEM private key");
            }
        }

        return new RpcTls(authorities, client, caText is null ? "the system trust store" : caName);
    }

    /// <summary>Reads a PEM file named by a parameter; the error names the parameter.</summary>
    public static string ReadFile(string path, string parameterName)
    {
        if (!Path.IsPathFullyQualified(path))
        {
            throw new StoreParameterException(parameterName, "must be an absolute path");
        }

        try
        {
            return File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new StoreParameterException(parameterName, $"cannot read '{path}': {e.Message}");
        }
    }
}
