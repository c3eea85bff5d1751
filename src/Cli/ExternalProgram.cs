using System.ComponentModel;
using System.Diagnostics;

namespace UblkCsi.Cli;

/// <summary>Runs a system tool (mkfs, mount, fio, losetup) and returns its stdout; failures become one clear line.</summary>
public static class ExternalProgram
{
    public static async Task<string> RunAsync(string program, params string[] arguments)
    {
        var start = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        Process process;
        try
        {
            process = Process.Start(start) ?? throw new CliException($"cannot start {program}");
        }
        catch (Win32Exception e)
        {
            throw new CliException($"cannot run {program}: {e.Message} (is it installed?)");
        }

        using (process)
        {
            var output = process.StandardOutput.ReadToEndAsync();
            var error = process.StandardError.ReadToEndAsync();
            await process.WaitForExitAsync();
            if (process.ExitCode != 0)
            {
                throw new CliException($"{program} {string.Join(' ', arguments)} exited with {process.ExitCode}: {(await error).Trim()}");
            }

            return await output;
        }
    }
}
