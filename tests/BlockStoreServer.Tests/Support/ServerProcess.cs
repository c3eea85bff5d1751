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

    /// <summary>Starts the published-next-to-the-tests server and waits until it logs that it serves.</summary>
    public static async Task<ServerProcess> StartAsync(params string[] args)
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

        var server = new ServerProcess(Process.Start(info)!);
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
