using System.Diagnostics;
using UblkCsi.Linux;

namespace UblkCsi.TestSupport;

/// <summary>A host started as a real child process (dotnet app.dll), stopped with a real SIGTERM.</summary>
public sealed class HostProcess : IDisposable
{
    private readonly Process _process;
    private readonly StringWriter _stdout = new();
    private readonly StringWriter _stderr = new();

    private HostProcess(Process process)
    {
        _process = process;
        _process.OutputDataReceived += (_, e) => { lock (_stdout) { _stdout.WriteLine(e.Data); } };
        _process.ErrorDataReceived += (_, e) => { lock (_stderr) { _stderr.WriteLine(e.Data); } };
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    public string Stdout { get { lock (_stdout) { return _stdout.ToString(); } } }

    public string Stderr { get { lock (_stderr) { return _stderr.ToString(); } } }

    public static HostProcess Start(string assemblyName, IEnumerable<string> args, IReadOnlyDictionary<string, string>? environment = null)
    {
        // The muxer running this test run, so the child uses the same runtime.
        var muxer = Path.GetFileNameWithoutExtension(Environment.ProcessPath) == "dotnet" ? Environment.ProcessPath! : "dotnet";
        var info = new ProcessStartInfo(muxer)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        info.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, assemblyName + ".dll"));
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }

        foreach (var (key, value) in environment ?? new Dictionary<string, string>())
        {
            info.Environment[key] = value;
        }

        return new HostProcess(Process.Start(info)!);
    }

    /// <summary>Waits until the socket file exists (the server is listening) or the process dies.</summary>
    public async Task WaitForSocketAsync(string path, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (!File.Exists(path))
        {
            if (_process.HasExited)
            {
                throw new InvalidOperationException($"host exited with {_process.ExitCode}: {Stderr}");
            }

            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"no socket at {path} after {timeout}: {Stderr}");
            }

            await Task.Delay(50);
        }
    }

    /// <summary>Writes one line to the process's stdin.</summary>
    public async Task WriteLineAsync(string line)
    {
        await _process.StandardInput.WriteLineAsync(line);
        await _process.StandardInput.FlushAsync();
    }

    /// <summary>Closes the process's stdin (EOF).</summary>
    public void CloseInput() => _process.StandardInput.Close();

    /// <summary>The first <paramref name="count"/> non-empty stdout lines, once printed; fails if the process exits or the time runs out first.</summary>
    public async Task<string[]> WaitForLinesAsync(int count, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            var lines = Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            if (lines.Length >= count)
            {
                return lines[..count];
            }

            if (_process.HasExited)
            {
                throw new InvalidOperationException($"exited with {_process.ExitCode} after {lines.Length} of {count} lines: {Stderr}");
            }

            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"{lines.Length} of {count} lines after {timeout}: {Stdout}{Stderr}");
            }

            await Task.Delay(20);
        }
    }

    public void SendSigterm()
    {
        if (Libc.Kill(_process.Id, 15) != 0)
        {
            throw new InvalidOperationException($"kill({_process.Id}, SIGTERM) failed");
        }
    }

    public async Task<int> WaitForExitAsync(TimeSpan timeout)
    {
        await _process.WaitForExitAsync().WaitAsync(timeout);
        _process.WaitForExit();
        return _process.ExitCode;
    }

    public void Dispose()
    {
        if (!_process.HasExited)
        {
            _process.Kill();
        }

        _process.Dispose();
    }
}
