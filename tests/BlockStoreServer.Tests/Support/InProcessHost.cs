using UblkCsi.GrpcEndpoints;
using UblkCsi.GrpcHosting;
using UblkCsi.Hosting;

namespace UblkCsi.BlockStoreServer.Tests.Support;

/// <summary>
/// The real ublk-blockstore-server entry point (<see cref="BlockStoreServerHost.RunAsync"/>) running
/// in this process on a real socket, with its own arguments, environment, stop signal and log capture.
/// </summary>
public sealed class InProcessHost : IAsyncDisposable
{
    private readonly CancellationTokenSource _stop = new();
    private readonly Task<int> _run;
    private readonly StringWriter _output = new();
    private readonly StringWriter _error = new();

    private InProcessHost(IReadOnlyList<string> args, IReadOnlyDictionary<string, string?> environment, TaskCompletionSource<string> started)
    {
        var invocation = new HostInvocation(args, environment, _output, _error, _stop.Token, Logs.AddTo, started.SetResult);
        _run = Task.Run(() => BlockStoreServerHost.RunAsync(invocation));
    }

    public CapturedLogs Logs { get; } = new();

    public GrpcEndpoint Endpoint { get; private set; } = null!;

    public string Error => _error.ToString();

    /// <summary>Starts the host and waits until it serves; fails with its error output if it exits first.</summary>
    public static async Task<InProcessHost> StartAsync(IReadOnlyList<string> args, IReadOnlyDictionary<string, string?>? environment = null)
    {
        var started = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        var host = new InProcessHost(args, environment ?? new Dictionary<string, string?>(), started);
        var first = await Task.WhenAny(started.Task, host._run).WaitAsync(TimeSpan.FromSeconds(30));
        if (first != started.Task)
        {
            throw new InvalidOperationException($"the server exited with {await host._run} before serving: {host.Error}");
        }

        host.Endpoint = GrpcEndpoint.Parse(await started.Task);
        return host;
    }

    /// <summary>Runs the host to its exit (for option errors, --help).</summary>
    public static async Task<(int ExitCode, string Output, string Error)> RunToExitAsync(params string[] args)
    {
        var started = new TaskCompletionSource<string>();
        var host = new InProcessHost(args, new Dictionary<string, string?>(), started);
        var exit = await host._run.WaitAsync(TimeSpan.FromSeconds(30));
        return (exit, host._output.ToString(), host.Error);
    }

    /// <summary>Signals a graceful stop and returns the exit code.</summary>
    public async Task<int> StopAsync()
    {
        await _stop.CancelAsync();
        return await _run.WaitAsync(TimeSpan.FromSeconds(60));
    }

    public async ValueTask DisposeAsync()
    {
        if (!_run.IsCompleted)
        {
            await StopAsync();
        }

        _stop.Dispose();
    }
}
