using UblkCsi.GrpcEndpoints;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Logging;

namespace UblkCsi.GrpcHosting;

/// <summary>
/// A server certificate kept in two PEM files (certificate chain, private key) and picked up again when
/// either changes, so a certificate renewed on disk (cert-manager, a rotated Secret) is served to new
/// connections without a restart. The files are looked at no more than once a second; a pair that does
/// not load (e.g. caught half-written) keeps the previous certificate in service and is logged.
/// </summary>
public sealed partial class PemCertificateFiles
{
    private static readonly TimeSpan CheckInterval = TimeSpan.FromSeconds(1);

    private readonly string _certificatePath;
    private readonly string _keyPath;
    private readonly ILogger _logger;
    private readonly Lock _lock = new();
    private X509Certificate2 _current;
    private (DateTime Certificate, DateTime Key) _loadedStamps;
    private long _nextCheck;

    /// <summary>Loads the pair now. Throws <see cref="IOException"/> naming the file when it cannot be loaded.</summary>
    public PemCertificateFiles(string certificatePath, string keyPath, ILogger logger)
    {
        ArgumentNullException.ThrowIfNull(certificatePath);
        ArgumentNullException.ThrowIfNull(keyPath);
        ArgumentNullException.ThrowIfNull(logger);
        _certificatePath = certificatePath;
        _keyPath = keyPath;
        _logger = logger;
        _loadedStamps = Stamps();
        _current = Load();
        _nextCheck = Environment.TickCount64 + (long)CheckInterval.TotalMilliseconds;
    }

    /// <summary>The certificate to present now (reloaded first when the files changed).</summary>
    public X509Certificate2 Current
    {
        get
        {
            if (Environment.TickCount64 < Volatile.Read(ref _nextCheck))
            {
                return Volatile.Read(ref _current);
            }

            lock (_lock)
            {
                _nextCheck = Environment.TickCount64 + (long)CheckInterval.TotalMilliseconds;
                var stamps = Stamps();
                if (stamps != _loadedStamps)
                {
                    try
                    {
                        var fresh = Load();
                        _loadedStamps = stamps;
                        Volatile.Write(ref _current, fresh);
                        Reloaded(_logger, _certificatePath, fresh.Subject, fresh.NotAfter.ToUniversalTime());
                    }
                    catch (IOException e)
                    {
                        // Keep serving the previous certificate; the next change is tried again.
                        _loadedStamps = stamps;
                        ReloadFailed(_logger, _certificatePath, e.Message);
                    }
                }

                return _current;
            }
        }
    }

    private (DateTime, DateTime) Stamps() => (File.GetLastWriteTimeUtc(_certificatePath), File.GetLastWriteTimeUtc(_keyPath));

    private X509Certificate2 Load()
    {
        try
        {
            return X509Certificate2.CreateFromPemFile(_certificatePath, _keyPath);
        }
        catch (Exception e) when (e is System.Security.Cryptography.CryptographicException or IOException or UnauthorizedAccessException or ArgumentException)
        {
            throw new IOException($"cannot load the TLS certificate '{_certificatePath}' with key '{_keyPath}': {e.Message}", e);
        }
    }

    [LoggerMessage(EventId = 14, Level = LogLevel.Information, Message = "TLS certificate {Path} reloaded: {Subject}, valid until {NotAfter:u}")]
    private static partial void Reloaded(ILogger logger, string path, string subject, DateTime notAfter);

    [LoggerMessage(EventId = 15, Level = LogLevel.Warning, Message = "TLS certificate {Path} changed but does not load ({Reason}); still serving the previous certificate")]
    private static partial void ReloadFailed(ILogger logger, string path, string reason);
}
