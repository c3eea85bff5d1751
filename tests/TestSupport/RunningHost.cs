using UblkCsi.GrpcEndpoints;
using Microsoft.Extensions.Logging;
using Grpc.Net.Client;
using UblkCsi.GrpcHosting;
using UblkCsi.Hosting;

namespace UblkCsi.TestSupport;

/// <summary>A real host entry point running in-process on a temp unix socket, with captured logs and console.</summary>
public sealed class RunningHost : IAsyncDisposable
{
    private readonly CancellationTokenSource _stop;
    private readonly Task<int> _run;

    private RunningHost(string directory, CancellationTokenSource stop, Task<int> run, GrpcEndpoint endpoint, CapturingLoggerProvider logs, StringWriter output, StringWriter error)
    {
        Directory = directory;
        _stop = stop;
        _run = run;
        Endpoint = endpoint;
        Logs = logs;
        Output = output;
        Error = error;
        Channel = GrpcChannels.Create(endpoint);
    }

    public string Directory { get; }

    public GrpcEndpoint Endpoint { get; }

    /// <summary>A channel to the host; generated clients take it.</summary>
    public GrpcChannel Channel { get; }

    public CapturingLoggerProvider Logs { get; }

    /// <summary>A unary call to the host named by its method descriptor.</summary>
    public Task<TResponse> CallAsync<TRequest, TResponse>(Google.Protobuf.Reflection.MethodDescriptor method, TRequest request, DateTime? deadline = null)
        where TRequest : class, Google.Protobuf.IMessage<TRequest>
        where TResponse : class, Google.Protobuf.IMessage<TResponse>, new() =>
        Channel.CallAsync<TRequest, TResponse>(method, request, deadline);

    public StringWriter Output { get; }

    public StringWriter Error { get; }

    public string SocketPath => Endpoint.UnixPath!;

    public static string NewDirectory()
    {
        var directory = Path.Combine("/tmp", "hostt-" + Guid.NewGuid().ToString("N")[..12]);
        System.IO.Directory.CreateDirectory(directory);
        return directory;
    }

    /// <summary>Runs the host with <c>--endpoint</c> on a fresh socket plus <paramref name="args"/>; fails if it exits instead of serving.</summary>
    public static async Task<RunningHost> StartAsync(
        Func<HostInvocation, Task<int>> run,
        IReadOnlyList<string> args,
        IReadOnlyDictionary<string, string?>? environment = null,
        string? directory = null,
        bool addEndpoint = true)
    {
        directory ??= NewDirectory();
        var socket = Path.Combine(directory, "csi.sock");
        var output = new StringWriter();
        var error = new StringWriter();
        var stop = new CancellationTokenSource();
        var started = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        var logs = new CapturingLoggerProvider();
        var fullArgs = addEndpoint ? ["--endpoint", "unix://" + socket, "--log-level", "trace", .. args] : args;
        var invocation = new HostInvocation(
            fullArgs,
            environment ?? new Dictionary<string, string?>(),
            output,
            error,
            stop.Token,
            logging => logging.AddProvider(logs),
            endpoint => started.TrySetResult(endpoint));

        var task = Task.Run(() => run(invocation));
        var first = await Task.WhenAny(started.Task, task).WaitAsync(TimeSpan.FromSeconds(30));
        if (first == task)
        {
            throw new InvalidOperationException($"host exited with {await task} instead of serving: {error}");
        }

        return new RunningHost(directory, stop, task, GrpcEndpoint.Parse(await started.Task), logs, output, error);
    }

    /// <summary>Invokes the host with arguments expected to be rejected; returns exit code and stderr.</summary>
    public static async Task<(int ExitCode, string Error, string Output)> RunToExitAsync(
        Func<HostInvocation, Task<int>> run, IReadOnlyList<string> args, IReadOnlyDictionary<string, string?>? environment = null)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        var invocation = new HostInvocation(args, environment ?? new Dictionary<string, string?>(), output, error, CancellationToken.None);
        var exit = await run(invocation).WaitAsync(TimeSpan.FromSeconds(30));
        return (exit, error.ToString(), output.ToString());
    }

    /// <summary>Signals a graceful stop and returns the exit code.</summary>
    public async Task<int> StopAsync()
    {
        await _stop.CancelAsync();
        return await _run.WaitAsync(TimeSpan.FromSeconds(30));
    }

    public async ValueTask DisposeAsync()
    {
        Channel.Dispose();
        if (!_run.IsCompleted)
        {
            await StopAsync();
        }

        _stop.Dispose();
        try
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
