using System.Net.Sockets;
using System.Runtime.Versioning;
using System.Text.Json;
using UblkCsi.Engine;
using UblkCsi.NodePlugin;
using UblkCsi.TestSupport;

namespace UblkCsi.Cli.Tests;

/// <summary>
/// `ublk-csi csi-call --batch` (the real program, in its own process) against the real node plugin
/// host serving on a unix socket: answers in order, each exactly what the single-call form says,
/// bad lines answered without ending the process, EOF ends it.
/// </summary>
[SupportedOSPlatform("linux")] // the node plugin host, as the plugin declares it
public sealed class CsiCallBatchTests
{
    private static readonly TimeSpan AnswerTimeout = TimeSpan.FromSeconds(60);

    private static async Task<RunningHost> StartNodeAsync(string? directory = null)
    {
        directory ??= RunningHost.NewDirectory();
        return await RunningHost.StartAsync(
            invocation => NodeHost.RunAsync(invocation, () => new HostSupportReport(ControlDevicePresent: true, IoUringAvailable: true), new NodeSystem { SkipKubeletDirectoryCheck = true }),
            ["--node-id", "node-a", "--driver-name", "ublk.csi.example.com", "--state-dir", Path.Combine(directory, "state")],
            directory: directory);
    }

    private static HostProcess StartBatch() => HostProcess.Start("ublk-csi", ["csi-call", "--batch"]);

    private static string Call(string socket, string method, string request = "{}", int timeout = 30) =>
        $$"""{"endpoint": "unix://{{socket}}", "method": "{{method}}", "request": {{request}}, "timeout": {{timeout}}}""";

    private static JsonElement Field(string answer, string name) => JsonDocument.Parse(answer).RootElement.GetProperty(name);

    [Fact]
    public async Task SeveralCallsAreAnsweredInOrderEachAsTheSingleCallPrintsIt()
    {
        await using var host = await StartNodeAsync();
        using var batch = StartBatch();

        await batch.WriteLineAsync(Call(host.SocketPath, "Probe"));
        await batch.WriteLineAsync(Call(host.SocketPath, "GetPluginInfo"));
        await batch.WriteLineAsync(Call(host.SocketPath, "NodeGetInfo"));
        var answers = await batch.WaitForLinesAsync(3, AnswerTimeout);

        var single = await CliProcess.RunAsync("csi-call", "--endpoint", "unix://" + host.SocketPath, "Probe");
        Assert.Equal(0, single.ExitCode);
        Assert.Equal("{\"response\": " + single.StandardOutput.TrimEnd('\n') + "}", answers[0]);
        Assert.True(Field(answers[0], "response").GetProperty("ready").GetBoolean());
        Assert.Equal("ublk.csi.example.com", Field(answers[1], "response").GetProperty("name").GetString());
        Assert.Equal("node-a", Field(answers[2], "response").GetProperty("nodeId").GetString());
    }

    [Fact]
    public async Task AnErrorStatusIsItsCodeNameAndMessageAsTheSingleCallPrintsThem()
    {
        await using var host = await StartNodeAsync();
        using var batch = StartBatch();

        await batch.WriteLineAsync(Call(host.SocketPath, "NodeStageVolume"));
        var answer = (await batch.WaitForLinesAsync(1, AnswerTimeout))[0];

        var single = await CliProcess.RunAsync("csi-call", "--endpoint", "unix://" + host.SocketPath, "NodeStageVolume", "{}");
        Assert.Equal(3, single.ExitCode);
        Assert.Equal("INVALID_ARGUMENT", Field(answer, "code").GetString());
        Assert.Equal(single.StandardError.TrimEnd('\n'), $"{Field(answer, "code").GetString()}: {Field(answer, "message").GetString()}");
    }

    [Fact]
    public async Task EachBadLineGetsAnErrorNamingTheProblemAndTheProcessTakesTheNextCall()
    {
        await using var host = await StartNodeAsync();
        using var batch = StartBatch();
        var socket = host.SocketPath;
        (string Line, string Error)[] bad =
        [
            ("not json", "the line is not JSON"),
            ("[1, 2]", "must be a JSON object with endpoint, method, request, timeout"),
            ("""{"method": "Probe"}""", "endpoint is required"),
            ($$"""{"endpoint": "unix://{{socket}}"}""", "method is required"),
            ($$"""{"endpoint": "unix://{{socket}}", "method": "Probe", "turbo": true}""", "unknown field 'turbo': allowed are endpoint, method, request, timeout"),
            ("""{"endpoint": "tcp://127.0.0.1:1", "method": "Probe"}""", "endpoint 'tcp://127.0.0.1:1' must be unix:///PATH.sock"),
            (Call(socket, "Frobnicate"), "'Frobnicate' is not a CSI Identity, Node or Controller rpc"),
            (Call(socket, "Probe", timeout: 0), "timeout 0 is invalid: use a whole number of seconds from 1 to 3600"),
            (Call(socket, "Probe", "[]"), "request must be a JSON object"),
            (Call(socket, "NodeStageVolume", """{"volumeIdentifier": "x"}"""), "the request is not a valid NodeStageVolumeRequest in JSON"),
        ];
        foreach (var (line, _) in bad)
        {
            await batch.WriteLineAsync(line);
        }

        await batch.WriteLineAsync(Call(socket, "Probe"));
        var answers = await batch.WaitForLinesAsync(bad.Length + 1, AnswerTimeout);

        for (var i = 0; i < bad.Length; i++)
        {
            Assert.Contains(bad[i].Error, Field(answers[i], "error").GetString());
        }

        Assert.True(Field(answers[^1], "response").GetProperty("ready").GetBoolean());
    }

    [Fact]
    public async Task EndOfInputEndsTheProcessWithZero()
    {
        await using var host = await StartNodeAsync();
        using var batch = StartBatch();

        await batch.WriteLineAsync(Call(host.SocketPath, "Probe"));
        await batch.WaitForLinesAsync(1, AnswerTimeout);
        batch.CloseInput();

        Assert.Equal(0, await batch.WaitForExitAsync(AnswerTimeout));
    }

    [Fact]
    public async Task ACallThatHangsEndsAtItsOwnDeadlineAndTheNextCallIsAnswered()
    {
        // Listening but never answering: the connection is accepted by the kernel, the HTTP/2 preface never is.
        var directory = Directory.CreateTempSubdirectory("ublk-batch-").FullName;
        var silent = Path.Combine(directory, "silent.sock");
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(silent));
        listener.Listen();
        await using var host = await StartNodeAsync();
        using var batch = StartBatch();

        await batch.WriteLineAsync(Call(silent, "Probe", timeout: 2));
        await batch.WriteLineAsync(Call(host.SocketPath, "Probe"));
        var answers = await batch.WaitForLinesAsync(2, AnswerTimeout);

        Assert.Equal("DEADLINE_EXCEEDED", Field(answers[0], "code").GetString());
        Assert.True(Field(answers[1], "response").GetProperty("ready").GetBoolean());
        Directory.Delete(directory, recursive: true);
    }

    [Fact]
    public async Task APluginRestartedOnTheSameSocketIsReachedAgain()
    {
        var directory = RunningHost.NewDirectory();
        var first = await StartNodeAsync(directory);
        var socket = first.SocketPath;
        using var batch = StartBatch();
        await batch.WriteLineAsync(Call(socket, "Probe"));
        await batch.WaitForLinesAsync(1, AnswerTimeout);

        // Probed again and again while it is down, as await_ready does: no reconnect backoff may
        // outlast the restart.
        await first.StopAsync();
        const int probesWhileDown = 5;
        for (var i = 0; i < probesWhileDown; i++)
        {
            await batch.WriteLineAsync(Call(socket, "Probe"));
        }

        var whileDown = (await batch.WaitForLinesAsync(1 + probesWhileDown, AnswerTimeout))[1..];
        await using var second = await StartNodeAsync(directory);
        await batch.WriteLineAsync(Call(socket, "Probe"));
        var afterRestart = (await batch.WaitForLinesAsync(2 + probesWhileDown, AnswerTimeout))[^1];

        Assert.All(whileDown, answer => Assert.Equal("UNAVAILABLE", Field(answer, "code").GetString()));
        Assert.True(Field(afterRestart, "response").GetProperty("ready").GetBoolean());
    }

    [Fact]
    public async Task BatchRefusesAnEndpointOrMethodOnItsCommandLine()
    {
        var result = await CliProcess.RunAsync("csi-call", "--batch", "--endpoint", "unix:///tmp/x.sock", "Probe");

        Assert.Equal(2, result.ExitCode);
        Assert.StartsWith("ublk-csi csi-call: --batch takes its calls from stdin, not --endpoint or METHOD", result.StandardError);
    }
}
