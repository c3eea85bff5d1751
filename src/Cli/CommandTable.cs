namespace UblkCsi.Cli;

/// <summary>Dispatches the first argument to a command. Each command parses its own options.</summary>
internal static class CommandTable
{
    private static readonly (string Name, string Summary, Func<string[], Task<int>> Run)[] Commands =
    [
        ("attach", AttachCommand.Summary, AttachCommand.RunAsync),
        ("list", ListCommand.Summary, ListCommand.RunAsync),
        ("detach", DetachCommand.Summary, DetachCommand.RunAsync),
        ("recover", RecoverCommand.Summary, RecoverCommand.RunAsync),
        ("demo", DemoCommand.Summary, DemoCommand.RunAsync),
        ("bench-engine", BenchEngineCommand.Summary, BenchEngineCommand.RunAsync),
        ("bench-grpc", BenchGrpcCommand.Summary, BenchGrpcCommand.RunAsync),
        ("bench-stores", BenchStoresCommand.Summary, BenchStoresCommand.RunAsync),
        ("bench-flush-storm", BenchFlushStormCommand.Summary, BenchFlushStormCommand.RunAsync),
        ("bench-s3-flush", BenchS3FlushCommand.Summary, BenchS3FlushCommand.RunAsync),
        ("csi-call", CsiCallCommand.Summary, CsiCallCommand.RunAsync),
        ("create-volume", CreateVolumeCommand.Summary, CreateVolumeCommand.RunAsync),
        ("expand-volume", CreateVolumeCommand.ExpandSummary, CreateVolumeCommand.RunExpandAsync),
    ];

    public static async Task<int> RunAsync(string[] args)
    {
        if (args.Length == 0 || args[0] is "-h" or "--help" or "help")
        {
            PrintUsage(Console.Out);
            return args.Length == 0 ? 2 : 0;
        }

        foreach (var (name, _, run) in Commands)
        {
            if (name == args[0])
            {
                try
                {
                    return await run(args[1..]);
                }
                catch (CliException e)
                {
                    Console.Error.WriteLine($"ublk-csi {name}: {e.Message}");
                    return e.ExitCode;
                }
            }
        }

        Console.Error.WriteLine($"ublk-csi: unknown command '{args[0]}' (try 'ublk-csi help')");
        return 2;
    }

    private static void PrintUsage(TextWriter w)
    {
        w.WriteLine("usage: ublk-csi <command> [options]");
        foreach (var (name, summary, _) in Commands)
        {
            w.WriteLine($"  {name,-10} {summary}");
        }
    }
}

/// <summary>A user-facing failure: printed as one line, exits non-zero, no stack trace.</summary>
internal sealed class CliException(string message, int exitCode = 1) : Exception(message)
{
    public int ExitCode { get; } = exitCode;
}
