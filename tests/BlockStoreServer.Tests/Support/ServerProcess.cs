using System.Diagnostics;
using UblkCsi.Linux;

namespace UblkCsi.BlockStoreServer.Tests.Support;

/// <summary>ublk-blockstore-server as a real child process: killed with real signals.</summary>
public sealed class ServerProcess : IDisposable
{
    private readonly Process _process;
    private readonly StringWriter _output = new();
    private readonly TaskCompletionSource _serving = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private ServerProcess(Process process)
    {
        _process = process;
        _process.OutputDataReceived += (_, e) => OnLine(e.Data);
        _process.ErrorDataReceived += (_, e) => OnLine(e.Data);
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    public int Id => _process.Id;

    /// <summary>The loopback port of the control path (gRPC), when started by <see cref="StartOnFreePortsAsync"/>.</summary>
    public int Port { get; private init; }

    /// <summary>The whole command line, to start the same server again on the same ports.</summary>
    public IReadOnlyList<string> Arguments { get; private init; } = [];

    /// <summary>Everything the process printed so far (logs go to stdout).</summary>
    public string Output
    {
        get
        {
            lock (_output)
            {
                return _output.ToString();
            }
        }
    }

    /// <summary>
    /// Starts the server with <paramref name="args"/> on two free loopback ports, one for the control
    /// path and one for the data path (NBD).
    /// </summary>
    /// <remarks>
    /// A port can be taken by another test between <see cref="TestPaths.FreePort"/> and the server's
    /// bind; the server then exits with "Address already in use" and is started again on new ports (up
    /// to three tries): these tests are about the server, not about winning that race. The data path
    /// gets a port of its own because the default, the control port + 1, is never checked free.
    /// </remarks>
    public static async Task<ServerProcess> StartOnFreePortsAsync(params string[] args)
    {
        for (var attempt = 1; ; attempt++)
        {
            var port = TestPaths.FreePort();
            string[] all = ["--listen", $"tcp://127.0.0.1:{port}", "--nbd-listen", $"tcp://127.0.0.1:{TestPaths.FreePort()}", .. args];
            try
            {
                return await LaunchAsync(all, port);
            }
            catch (InvalidOperationException e) when (attempt < 3 && e.Message.Contains("Address already in use", StringComparison.Ordinal))
            {
            }
        }
    }

    /// <summary>Starts the published-next-to-the-tests server and waits until it logs that it serves.</summary>
    public static Task<ServerProcess> StartAsync(IReadOnlyList<string> args) => LaunchAsync(args, port: 0);

    private static async Task<ServerProcess> LaunchAsync(IReadOnlyList<string> args, int port)
    {
        var info = new ProcessStartInfo(Path.Combine(AppContext.BaseDirectory, "ublk-blockstore-server"))
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }

        var server = new ServerProcess(Process.Start(info)!) { Port = port, Arguments = args };
        var exited = server._process.WaitForExitAsync();
        var first = await Task.WhenAny(server._serving.Task, exited).WaitAsync(TimeSpan.FromSeconds(60));
        if (first != server._serving.Task)
        {
            throw new InvalidOperationException($"ublk-blockstore-server exited with {server._process.ExitCode} before serving:\n{server.Output}");
        }

        return server;
    }

    /// <summary>SIGKILL: the process dies at once, mid-call, without any cleanup.</summary>
    public void KillHard()
    {
        _process.Kill();
        _process.WaitForExit();
    }

    /// <summary>SIGTERM and the exit code.</summary>
    public async Task<int> TerminateAsync()
    {
        Assert.Equal(0, Libc.Kill(_process.Id, 15));
        await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(60));
        _process.WaitForExit(); // drains the output readers
        return _process.ExitCode;
    }

    public void Dispose()
    {
        if (!_process.HasExited)
        {
            _process.Kill();
            _process.WaitForExit();
        }

        _process.Dispose();
    }

    private void OnLine(string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (_output)
        {
            _output.WriteLine(line);
        }

        if (line.Contains("serving volumes of", StringComparison.Ordinal))
        {
            _serving.TrySetResult();
        }
    }
}
