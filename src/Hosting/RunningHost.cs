namespace UblkCsi.Hosting;

/// <summary>What a host started: it serves until <see cref="StopAsync"/>, which finishes in-flight work.</summary>
public interface IRunningHost : IAsyncDisposable
{
    /// <summary>Where it serves, for the "started" log line and <see cref="HostInvocation.Started"/>.</summary>
    string Address { get; }

    /// <summary>Stops gracefully: no new work, in-flight work finishes, state is made durable.</summary>
    Task StopAsync();
}

/// <summary>
/// A start failure the operator must fix (endpoint taken, file unreadable, kernel facility missing):
/// printed as one line and the process exits with <see cref="HostRunner.StartFailedExitCode"/>.
/// </summary>
public sealed class HostStartException(string message, Exception? inner = null) : Exception(message, inner);
