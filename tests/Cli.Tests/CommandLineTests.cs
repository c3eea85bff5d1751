namespace UblkCsi.Cli.Tests;

/// <summary>What an operator sees for good and bad command lines: usage, one-line errors, exit codes.</summary>
public class CommandLineTests
{
    [Fact]
    public async Task NoArgumentsPrintsUsageAndExits2()
    {
        var result = await CliProcess.RunAsync();
        Assert.Equal(2, result.ExitCode);
        Assert.StartsWith("usage: ublk-csi", result.StandardOutput);
    }

    [Fact]
    public async Task HelpListsEveryCommand()
    {
        var result = await CliProcess.RunAsync("help");
        Assert.Equal(0, result.ExitCode);
        foreach (var command in new[] { "attach", "list", "status", "detach", "recover", "demo", "csi-call", "create-volume" })
        {
            Assert.Contains($"  {command} ", result.StandardOutput);
        }
    }

    [Fact]
    public async Task UnknownCommandIsOneLineAndExit2()
    {
        var result = await CliProcess.RunAsync("frobnicate");
        Assert.Equal(2, result.ExitCode);
        Assert.Single(result.ErrorLines);
        Assert.Contains("unknown command 'frobnicate'", result.StandardError);
    }

    [Fact]
    public async Task AttachWithoutStoreNamesTheOption()
    {
        var result = await CliProcess.RunAsync("attach", "--size", "1G");
        Assert.Equal(2, result.ExitCode);
        Assert.StartsWith("ublk-csi attach: --store is required", result.StandardError);
        Assert.Equal(string.Empty, result.StandardOutput);
    }

    [Theory]
    [InlineData("1G")]
    [InlineData("1Gi")]
    [InlineData("1GiB")]
    [InlineData("64Mi")]
    public async Task AttachTakesTheSameSizeGrammarAsStorageClassesAndBenchStores(string size)
    {
        // No ublk driver on the host: attach gets past option parsing and fails on the device, not the size.
        var result = await CliProcess.RunAsync("attach", "--store", "memory", "--size", size, "--state-dir", Path.GetTempPath());
        Assert.DoesNotContain("--size", result.StandardError);
    }

    [Theory]
    [InlineData("12Q")]
    [InlineData("-1G")]
    [InlineData("1000")]
    [InlineData("")]
    public async Task AttachRejectsABadSizeNamingAllowedForms(string size)
    {
        var result = await CliProcess.RunAsync("attach", "--store", "memory", "--size", size);
        Assert.Equal(2, result.ExitCode);
        Assert.Contains($"--size '{size}' is invalid", result.StandardError);
        Assert.Contains("K, M, G or T", result.StandardError);
    }

    [Fact]
    public async Task AttachRejectsAnUnknownStoreTypeListingTheForms()
    {
        var result = await CliProcess.RunAsync("attach", "--store", "ftp://host/vol", "--size", "1G");
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("unknown store type 'ftp'", result.StandardError);
        Assert.Contains("file:PATH", result.StandardError);
    }

    [Fact]
    public async Task AttachRejectsAnUnknownOption()
    {
        var result = await CliProcess.RunAsync("attach", "--store", "memory", "--size", "1G", "--turbo");
        Assert.Equal(2, result.ExitCode);
        Assert.StartsWith("ublk-csi attach: unknown option '--turbo'", result.StandardError);
    }

    [Theory]
    [InlineData("--queues", "0")]
    [InlineData("--queues", "many")]
    [InlineData("--depth", "5000")]
    public async Task AttachRejectsOutOfRangeNumbersWithTheRange(string option, string value)
    {
        var result = await CliProcess.RunAsync("attach", "--store", "memory", "--size", "1G", option, value);
        Assert.Equal(2, result.ExitCode);
        Assert.Contains($"{option} '{value}' is invalid: use a whole number from 1 to", result.StandardError);
    }

    [Fact]
    public async Task AttachWithoutTheUblkDriverSaysWhatToLoad()
    {
        if (File.Exists("/dev/ublk-control"))
        {
            return; // This host has the driver; the kernel suite covers attach for real.
        }

        var state = Directory.CreateTempSubdirectory("cli-state-");
        try
        {
            var result = await CliProcess.RunAsync("attach", "--store", "memory", "--size", "64M", "--state-dir", state.FullName);
            Assert.Equal(1, result.ExitCode);
            Assert.Single(result.ErrorLines);
            Assert.Contains("ublk_drv", result.StandardError);
            Assert.Equal(string.Empty, result.StandardOutput);
            Assert.DoesNotContain("   at ", result.StandardError);
        }
        finally
        {
            state.Delete(recursive: true);
        }
    }

    [Fact]
    public async Task DetachRequiresANumericId()
    {
        var result = await CliProcess.RunAsync("detach", "seven");
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("seven", result.StandardError);
    }
}
