using Microsoft.Extensions.Logging;

namespace UblkCsi.Hosting;

/// <summary>
/// Everything a host's entry point takes from its process, so tests can run a real host in-process
/// with their own arguments, environment, stop signal and log capture.
/// </summary>
/// <param name="Args">Command-line arguments.</param>
/// <param name="Environment">Environment variables.</param>
/// <param name="Output">Where --help and --version go.</param>
/// <param name="Error">Where invalid options and fatal start errors are printed (one line).</param>
/// <param name="Stop">Signalled to shut down gracefully.</param>
/// <param name="ConfigureLogging">Extra logging configuration.</param>
/// <param name="Started">Called with the address the host serves (e.g. its bound endpoint) once it accepts work.</param>
public sealed record HostInvocation(
    IReadOnlyList<string> Args,
    IReadOnlyDictionary<string, string?> Environment,
    TextWriter Output,
    TextWriter Error,
    CancellationToken Stop,
    Action<ILoggingBuilder>? ConfigureLogging = null,
    Action<string>? Started = null)
{
    /// <summary>The invocation of a real process: its arguments, environment, console and SIGTERM/SIGINT.</summary>
    public static HostInvocation FromProcess(string[] args, CancellationToken stop) => new(
        args,
        System.Environment.GetEnvironmentVariables().Cast<System.Collections.DictionaryEntry>()
            .ToDictionary(e => (string)e.Key, e => (string?)e.Value, StringComparer.Ordinal),
        Console.Out,
        Console.Error,
        stop);
}
