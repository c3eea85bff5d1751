namespace UblkCsi.Cli;

/// <summary>One command of a tool: its name (the first argument), a one-line summary, and what runs it.</summary>
public sealed record Command(string Name, string Summary, Func<string[], Task<int>> RunAsync);

/// <summary>
/// Dispatches the first argument to a command; each command parses its own options. Shared by the
/// operator tool and the benchmarks, so both answer help, unknown commands and failures alike.
/// </summary>
public static class CommandRunner
{
    public static async Task<int> RunAsync(string tool, IReadOnlyList<Command> commands, string[] args)
    {
        if (args.Length == 0 || args[0] is "-h" or "--help" or "help")
        {
            PrintUsage(tool, commands, Console.Out);
            return args.Length == 0 ? 2 : 0;
        }

        foreach (var command in commands)
        {
            if (command.Name == args[0])
            {
                try
                {
                    return await command.RunAsync(args[1..]);
                }
                catch (CliException e)
                {
                    Console.Error.WriteLine($"{tool} {command.Name}: {e.Message}");
                    return e.ExitCode;
                }
            }
        }

        Console.Error.WriteLine($"{tool}: unknown command '{args[0]}' (try '{tool} help')");
        return 2;
    }

    private static void PrintUsage(string tool, IReadOnlyList<Command> commands, TextWriter w)
    {
        w.WriteLine($"usage: {tool} <command> [options]");
        foreach (var command in commands)
        {
            w.WriteLine($"  {command.Name,-10} {command.Summary}");
        }
    }
}

/// <summary>A user-facing failure: printed as one line, exits non-zero, no stack trace.</summary>
public sealed class CliException(string message, int exitCode = 1) : Exception(message)
{
    public int ExitCode { get; } = exitCode;
}
