using System.Reflection;
using Microsoft.Extensions.Logging;

namespace UblkCsi.GrpcHosting.Hosting;

/// <summary>
/// The life of a gRPC host process: parse options (exit 2 on bad ones), build the server, serve
/// until stopped, stop gracefully. Exit codes: 0 clean stop or --help, 1 failed to start, 2 invalid options.
/// </summary>
public static partial class GrpcHostRunner
{
    /// <summary>Exit code for invalid options.</summary>
    public const int InvalidOptionsExitCode = 2;

    /// <summary>Exit code when the server cannot start (endpoint taken, directory missing, ...).</summary>
    public const int StartFailedExitCode = 1;

    /// <summary>Runs a host.</summary>
    /// <typeparam name="TOptions">The host's own options.</typeparam>
    /// <param name="program">Program name for messages, e.g. ublk-csi-controller.</param>
    /// <param name="invocation">Arguments, environment, console and stop signal.</param>
    /// <param name="hostOptions">The host's option declarations, in addition to <see cref="CommonHostOptions.Declarations"/>.</param>
    /// <param name="readOptions">Reads and validates the host's options; throws <see cref="HostOptionException"/>.</param>
    /// <param name="serverOptions">Server settings beyond endpoint and message size (e.g. which fields are secret).</param>
    /// <param name="configure">Prepares the host (state directories, ...) and adds its services to the server.</param>
    public static async Task<int> RunAsync<TOptions>(
        string program,
        HostInvocation invocation,
        IReadOnlyList<HostOption> hostOptions,
        Func<HostCommandLine, TOptions> readOptions,
        Func<CommonHostOptions, GrpcServerOptions> serverOptions,
        Action<TOptions, GrpcServer, ILoggerFactory> configure)
    {
        var declarations = CommonHostOptions.Declarations.Concat(hostOptions).ToList();
        CommonHostOptions common;
        TOptions options;
        try
        {
            var line = HostCommandLine.Parse(invocation.Args, invocation.Environment, declarations);
            if (line.Has("--help"))
            {
                await invocation.Output.WriteLineAsync(HostCommandLine.Usage(program, declarations));
                return 0;
            }

            if (line.Has("--version"))
            {
                await invocation.Output.WriteLineAsync($"{program} {InformationalVersion(Assembly.GetEntryAssembly())}");
                return 0;
            }

            common = CommonHostOptions.From(line);
            options = readOptions(line);
        }
        catch (HostOptionException e)
        {
            await invocation.Error.WriteLineAsync($"{program}: {e.Message}");
            return InvalidOptionsExitCode;
        }

        using var loggerFactory = HostLogging.Create(common.LogLevel, common.LogFormat, invocation.ConfigureLogging);
        var logger = loggerFactory.CreateLogger(program);
        Starting(logger, program, InformationalVersion(Assembly.GetEntryAssembly()));
        await using var server = new GrpcServer(serverOptions(common), loggerFactory);
        try
        {
            configure(options, server, loggerFactory);
            await server.StartAsync(invocation.Stop);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidOperationException or System.Net.Sockets.SocketException)
        {
            StartFailed(logger, program, e.Message, e);
            await invocation.Error.WriteLineAsync($"{program}: cannot start: {e.Message}");
            return StartFailedExitCode;
        }
        catch (OperationCanceledException) when (invocation.Stop.IsCancellationRequested)
        {
            return 0;
        }

        invocation.Started?.Invoke(server.Endpoint);
        try
        {
            await Task.Delay(Timeout.Infinite, invocation.Stop);
        }
        catch (OperationCanceledException)
        {
        }

        ShuttingDown(logger, program);
        await server.StopAsync();
        return 0;
    }

    /// <summary>The assembly's informational version (e.g. 0.1.0+commit), or its plain version.</summary>
    public static string InformationalVersion(Assembly? assembly) =>
        assembly?.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion
        ?? assembly?.GetName().Version?.ToString()
        ?? "unknown";

    [LoggerMessage(EventId = 22, Level = LogLevel.Information, Message = "{Program} {Version} starting")]
    private static partial void Starting(ILogger logger, string program, string version);

    [LoggerMessage(EventId = 20, Level = LogLevel.Critical, Message = "{Program} cannot start: {Reason}")]
    private static partial void StartFailed(ILogger logger, string program, string reason, Exception exception);

    [LoggerMessage(EventId = 21, Level = LogLevel.Information, Message = "{Program} stopping: finishing in-flight calls")]
    private static partial void ShuttingDown(ILogger logger, string program);
}
