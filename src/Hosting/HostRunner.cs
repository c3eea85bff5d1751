using System.Reflection;
using Microsoft.Extensions.Logging;

namespace UblkCsi.Hosting;

/// <summary>
/// The life of a host process: parse options (exit 2 on bad ones), start, serve until stopped, stop
/// gracefully. Exit codes: 0 clean stop or --help/--version, 1 failed to start, 2 invalid options.
/// </summary>
public static partial class HostRunner
{
    /// <summary>Exit code for invalid options.</summary>
    public const int InvalidOptionsExitCode = 2;

    /// <summary>Exit code when the host cannot start (endpoint taken, directory missing, ...).</summary>
    public const int StartFailedExitCode = 1;

    /// <summary>--help and --version, which every host takes.</summary>
    public static IReadOnlyList<HostOption> StandardFlags { get; } =
    [
        new("--help", null, "print this help and exit", IsFlag: true),
        new("--version", null, "print the version and exit", IsFlag: true),
    ];

    /// <summary>Runs a host.</summary>
    /// <typeparam name="TOptions">The host's options.</typeparam>
    /// <param name="program">Program name for messages, e.g. ublk-csi-controller.</param>
    /// <param name="invocation">Arguments, environment, console and stop signal.</param>
    /// <param name="declarations">Every option the host takes (<see cref="StandardFlags"/> are added here).</param>
    /// <param name="readOptions">Reads and validates the options; throws <see cref="HostOptionException"/>.</param>
    /// <param name="logOptions">The logging options within the host's options.</param>
    /// <param name="startAsync">Starts serving; the host stops with the stop signal.</param>
    public static async Task<int> RunAsync<TOptions>(
        string program,
        HostInvocation invocation,
        IReadOnlyList<HostOption> declarations,
        Func<HostCommandLine, TOptions> readOptions,
        Func<TOptions, LogOptions> logOptions,
        Func<TOptions, ILoggerFactory, CancellationToken, Task<IRunningHost>> startAsync)
    {
        var all = declarations.Concat(StandardFlags).ToList();
        TOptions options;
        try
        {
            var line = HostCommandLine.Parse(invocation.Args, invocation.Environment, all);
            if (line.Has("--help"))
            {
                await invocation.Output.WriteLineAsync(HostCommandLine.Usage(program, all));
                return 0;
            }

            if (line.Has("--version"))
            {
                await invocation.Output.WriteLineAsync($"{program} {InformationalVersion(Assembly.GetEntryAssembly())}");
                return 0;
            }

            options = readOptions(line);
        }
        catch (HostOptionException e)
        {
            await invocation.Error.WriteLineAsync($"{program}: {e.Message}");
            return InvalidOptionsExitCode;
        }

        var logging = logOptions(options);
        using var loggerFactory = HostLogging.Create(logging.Level, logging.Format, invocation.ConfigureLogging);
        var logger = loggerFactory.CreateLogger(program);
        Starting(logger, program, InformationalVersion(Assembly.GetEntryAssembly()));
        IRunningHost host;
        try
        {
            host = await startAsync(options, loggerFactory, invocation.Stop);
        }
        catch (Exception e) when (IsStartFailure(e))
        {
            StartFailed(logger, program, e.Message, e);
            await invocation.Error.WriteLineAsync($"{program}: cannot start: {e.Message}");
            return StartFailedExitCode;
        }
        catch (OperationCanceledException) when (invocation.Stop.IsCancellationRequested)
        {
            return 0;
        }

        await using (host)
        {
            Serving(logger, program, host.Address);
            invocation.Started?.Invoke(host.Address);
            try
            {
                await Task.Delay(Timeout.Infinite, invocation.Stop);
            }
            catch (OperationCanceledException)
            {
            }

            ShuttingDown(logger, program);
            await host.StopAsync();
        }

        Stopped(logger, program);
        return 0;
    }

    /// <summary>The assembly's informational version (e.g. 0.1.0+commit), or its plain version.</summary>
    public static string InformationalVersion(Assembly? assembly) =>
        assembly?.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion
        ?? assembly?.GetName().Version?.ToString()
        ?? "unknown";

    private static bool IsStartFailure(Exception e) =>
        e is HostStartException or IOException or UnauthorizedAccessException or System.Net.Sockets.SocketException;

    [LoggerMessage(EventId = 20, Level = LogLevel.Critical, Message = "{Program} cannot start: {Reason}")]
    private static partial void StartFailed(ILogger logger, string program, string reason, Exception exception);

    [LoggerMessage(EventId = 21, Level = LogLevel.Information, Message = "{Program} stopping: finishing in-flight work")]
    private static partial void ShuttingDown(ILogger logger, string program);

    [LoggerMessage(EventId = 22, Level = LogLevel.Information, Message = "{Program} {Version} starting")]
    private static partial void Starting(ILogger logger, string program, string version);

    [LoggerMessage(EventId = 23, Level = LogLevel.Information, Message = "{Program} serving on {Address}")]
    private static partial void Serving(ILogger logger, string program, string address);

    [LoggerMessage(EventId = 24, Level = LogLevel.Information, Message = "{Program} stopped")]
    private static partial void Stopped(ILogger logger, string program);
}
