using UblkCsi.TestSupport;

namespace UblkCsi.Cli.Tests;

/// <summary>Runs the built ublk-csi (the real program, in its own process).</summary>
internal static class CliProcess
{
    public static Task<DotnetProgram.Result> RunAsync(params string[] arguments) => DotnetProgram.RunAsync("ublk-csi.dll", arguments);
}
