using System.Text.Encodings.Web;
using System.Text.Json;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;

namespace UblkCsi.Cli;

/// <summary>
/// <c>ublk-csi csi-call --batch</c>: many CSI calls from one process, so a test that makes dozens of
/// calls pays the process start once (under TCG a ReadyToRun start costs seconds, the call itself
/// milliseconds). Each stdin line is one call,
/// <c>{"endpoint": "unix:///PATH.sock", "method": "Probe", "request": {...}, "timeout": 120}</c>
/// (request defaults to <c>{}</c>, timeout to 120 s), and gets exactly one stdout line, in order:
/// <list type="bullet">
/// <item><c>{"response": R}</c> where R is the response exactly as the single-call form prints it,</item>
/// <item><c>{"code": "ALREADY_EXISTS", "message": "..."}</c> for a gRPC error status,</item>
/// <item><c>{"error": "..."}</c> for a line that is not a valid call (the single-call form's exit-2 errors).</item>
/// </list>
/// Calls run one at a time, each with its own deadline; one channel per endpoint is kept for the next
/// call (it connects again by itself after the plugin restarts on the same socket, with no reconnect
/// backoff: the tests probe that). EOF on stdin ends the process with 0.
/// </summary>
internal static class CsiCallBatch
{
    private static readonly string[] Fields = ["endpoint", "method", "request", "timeout"];

    public static async Task<int> RunAsync(TextReader input, TextWriter output)
    {
        var channels = new Dictionary<string, GrpcChannel>(StringComparer.Ordinal);
        try
        {
            while (await input.ReadLineAsync() is { } line)
            {
                await output.WriteLineAsync(await AnswerAsync(line, channels));
                await output.FlushAsync();
            }

            return 0;
        }
        finally
        {
            foreach (var channel in channels.Values)
            {
                channel.Dispose();
            }
        }
    }

    private static async Task<string> AnswerAsync(string line, Dictionary<string, GrpcChannel> channels)
    {
        string socketPath;
        Google.Protobuf.Reflection.MethodDescriptor method;
        IMessage request;
        int timeout;
        try
        {
            (socketPath, method, request, timeout) = ParseLine(line);
        }
        catch (CliException e)
        {
            return "{\"error\": " + Quote(e.Message) + "}";
        }

        if (!channels.TryGetValue(socketPath, out var channel))
        {
            channel = CsiCallCommand.UnixChannel(socketPath);
            channels.Add(socketPath, channel);
        }

        try
        {
            var response = await CsiCallCommand.InvokeAsync(channel, method, request, timeout);
            return "{\"response\": " + JsonFormatter.Default.Format(response) + "}";
        }
        catch (RpcException e)
        {
            return "{\"code\": " + Quote(CsiCallCommand.CodeName(e.StatusCode)) + ", \"message\": " + Quote(e.Status.Detail) + "}";
        }
    }

    private static (string SocketPath, Google.Protobuf.Reflection.MethodDescriptor Method, IMessage Request, int Timeout) ParseLine(string line)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(line);
        }
        catch (JsonException e)
        {
            throw new CliException($"the line is not JSON: {e.Message}");
        }

        using (document)
        {
            var call = document.RootElement;
            if (call.ValueKind != JsonValueKind.Object)
            {
                throw new CliException($"the line must be a JSON object with {string.Join(", ", Fields)}");
            }

            foreach (var field in call.EnumerateObject())
            {
                if (Array.IndexOf(Fields, field.Name) < 0)
                {
                    throw new CliException($"unknown field '{field.Name}': allowed are {string.Join(", ", Fields)}");
                }
            }

            var socketPath = CsiCallCommand.SocketPath(RequiredString(call, "endpoint"), "endpoint");
            var methodName = RequiredString(call, "method");
            string? json = null;
            if (call.TryGetProperty("request", out var request))
            {
                json = request.ValueKind == JsonValueKind.Object
                    ? request.GetRawText()
                    : throw new CliException("request must be a JSON object (the CSI request in protobuf JSON)");
            }

            var timeout = CsiCallCommand.DefaultTimeoutSeconds;
            if (call.TryGetProperty("timeout", out var seconds)
                && (!seconds.TryGetInt32(out timeout) || timeout < CsiCallCommand.MinTimeoutSeconds || timeout > CsiCallCommand.MaxTimeoutSeconds))
            {
                throw new CliException($"timeout {seconds.GetRawText()} is invalid: use a whole number of seconds from {CsiCallCommand.MinTimeoutSeconds} to {CsiCallCommand.MaxTimeoutSeconds}");
            }

            var (method, message) = CsiCallCommand.Request(methodName, json);
            return (socketPath, method, message, timeout);
        }
    }

    private static string RequiredString(JsonElement call, string name) =>
        call.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String
            ? value.GetString()!
            : throw new CliException($"{name} is required and must be a string");

    // Relaxed escaping: the answers go to a shell and a log, never into HTML.
    private static string Quote(string text) => "\"" + JsonEncodedText.Encode(text, JavaScriptEncoder.UnsafeRelaxedJsonEscaping) + "\"";
}
