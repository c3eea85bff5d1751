using System.Diagnostics;

namespace UblkCsi.TestSupport;

/// <summary>Runs one of the built programs (the real one, in its own process, from the test's output directory) and captures what it printed.</summary>
public static class DotnetProgram
{
    public sealed record Result(int ExitCode, string StandardOutput, string StandardError)
    {
        public string[] ErrorLines => StandardError.Split('\n', StringSplitOptions.RemoveEmptyEntries);
    }

    /// <param name="assemblyFile">The program's assembly next to the test's, e.g. "ublk-csi.dll".</param>
    /// <param name="arguments">Its command line.</param>
    public static async Task<Result> RunAsync(string assemblyFile, params string[] arguments)
    {
        var start = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, assemblyFile));
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        await process.WaitForExitAsync(timeout.Token);
        return new Result(process.ExitCode, await output, await error);
    }
}
