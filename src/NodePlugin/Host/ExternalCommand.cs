using System.Diagnostics;

namespace UblkCsi.NodePlugin.Host;

/// <summary>A system tool (mount, mkfs, blkid) that failed; the message quotes its stderr.</summary>
public sealed class ExternalCommandException(string command, int exitCode, string message)
    : Exception($"{command} exited with {exitCode}: {message}")
{
    /// <summary>The tool's exit code.</summary>
    public int ExitCode { get; } = exitCode;
}

/// <summary>Runs a system tool with arguments passed as a list (never through a shell) and captures its output.</summary>
public static class ExternalCommand
{
    /// <summary>Exit code and output of a finished command.</summary>
    public readonly record struct Result(int ExitCode, string Output, string Error);

    /// <summary>Runs and returns whatever it exits with.</summary>
    public static Result Run(string program, params IReadOnlyList<string> arguments)
    {
        var start = new ProcessStartInfo(program)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        using var process = Process.Start(start) ?? throw new InvalidOperationException($"cannot start {program}");
        process.StandardInput.Close();
        var error = process.StandardError.ReadToEndAsync();
        var output = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        return new Result(process.ExitCode, output, error.GetAwaiter().GetResult());
    }

    /// <summary>Runs and throws <see cref="ExternalCommandException"/> unless it exits 0.</summary>
    public static string RunChecked(string program, params IReadOnlyList<string> arguments)
    {
        var result = Run(program, arguments);
        if (result.ExitCode != 0)
        {
            var detail = string.IsNullOrWhiteSpace(result.Error) ? result.Output : result.Error;
            throw new ExternalCommandException($"{program} {string.Join(' ', arguments)}", result.ExitCode, detail.Trim());
        }

        return result.Output;
    }
}
