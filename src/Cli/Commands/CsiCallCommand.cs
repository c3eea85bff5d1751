using System.Net.Sockets;
using Google.Protobuf;
using Google.Protobuf.Reflection;
using Grpc.Core;
using Grpc.Net.Client;
using Csi.V1;

namespace UblkCsi.Cli;

/// <summary>
/// <c>ublk-csi csi-call</c>: one CSI call on a plugin's unix socket, request and response as protobuf
/// JSON, the way kubelet or a sidecar would make it. For tests and for operators poking at a plugin.
/// A failed call prints <c>CODE: message</c> (e.g. <c>ALREADY_EXISTS: ...</c>) and exits 3.
/// With <c>--batch</c> one process makes many calls, one per stdin line (<see cref="CsiCallBatch"/>).
/// </summary>
internal static class CsiCallCommand
{
    public const string Summary = "make one CSI call (JSON in, JSON out) on a plugin's unix socket";

    private const string Usage = "usage: ublk-csi csi-call --endpoint unix:///PATH.sock [--timeout SECONDS] METHOD [REQUEST-JSON]\n"
        + "       ublk-csi csi-call --batch\n"
        + "  METHOD: an Identity, Node or Controller rpc, e.g. Probe, NodeStageVolume, NodeGetVolumeStats\n"
        + "  --batch: one call per stdin line, {\"endpoint\": \"unix:///PATH.sock\", \"method\": METHOD, \"request\": {...}, \"timeout\": SECONDS},\n"
        + "           one answer per stdout line, {\"response\": {...}}, {\"code\": \"CODE\", \"message\": \"...\"} or {\"error\": \"...\"}; ends at EOF";

    /// <summary>Seconds a call may take unless the caller says otherwise.</summary>
    public const int DefaultTimeoutSeconds = 120;

    /// <summary>The bounds of a call's timeout in seconds, for both forms.</summary>
    public const int MinTimeoutSeconds = 1, MaxTimeoutSeconds = 3600;

    private const int CallFailedExitCode = 3;

    public static async Task<int> RunAsync(string[] args)
    {
        string? endpoint = null, methodName = null, json = null;
        var timeout = DefaultTimeoutSeconds;
        var batch = false;
        for (var i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--endpoint": endpoint = CommandOptions.Value(args, ref i); break;
                case "--timeout": timeout = CommandOptions.ParseInt("--timeout", CommandOptions.Value(args, ref i), MinTimeoutSeconds, MaxTimeoutSeconds); break;
                case "--batch": batch = true; break;
                case "-h" or "--help": Console.Out.WriteLine(Usage); return 0;
                default:
                    if (methodName is null)
                    {
                        methodName = args[i];
                    }
                    else if (json is null)
                    {
                        json = args[i];
                    }
                    else
                    {
                        throw new CliException($"unexpected argument '{args[i]}'\n{Usage}", 2);
                    }

                    break;
            }
        }

        if (batch)
        {
            if (endpoint is not null || methodName is not null)
            {
                throw new CliException($"--batch takes its calls from stdin, not --endpoint or METHOD\n{Usage}", 2);
            }

            return await CsiCallBatch.RunAsync(Console.In, Console.Out);
        }

        if (endpoint is null || methodName is null)
        {
            throw new CliException($"--endpoint and METHOD are required\n{Usage}", 2);
        }

        var socketPath = SocketPath(endpoint, "--endpoint");
        var (method, request) = Request(methodName, json);
        using var channel = UnixChannel(socketPath);
        try
        {
            var response = await InvokeAsync(channel, method, request, timeout);
            Console.Out.WriteLine(JsonFormatter.Default.Format(response));
            return 0;
        }
        catch (RpcException e)
        {
            Console.Error.WriteLine($"{CodeName(e.StatusCode)}: {e.Status.Detail}");
            return CallFailedExitCode;
        }
    }

    /// <summary>The socket path of a <c>unix://</c> endpoint; the error names <paramref name="parameter"/>.</summary>
    internal static string SocketPath(string endpoint, string parameter) =>
        endpoint.StartsWith("unix://", StringComparison.Ordinal)
            ? endpoint["unix://".Length..]
            : throw new CliException($"{parameter} '{endpoint}' must be unix:///PATH.sock", 2);

    /// <summary>The rpc named <paramref name="methodName"/> and its request parsed from protobuf JSON (<c>{}</c> if null).</summary>
    internal static (MethodDescriptor Method, IMessage Request) Request(string methodName, string? json)
    {
        var method = FindMethod(methodName);
        try
        {
            return (method, JsonParser.Default.Parse(json ?? "{}", method.InputType));
        }
        catch (InvalidProtocolBufferException e)
        {
            throw new CliException($"the request is not a valid {method.InputType.Name} in JSON: {e.Message}", 2);
        }
    }

    /// <summary>One unary call with a deadline <paramref name="timeoutSeconds"/> from now; a failure is an <see cref="RpcException"/>.</summary>
    internal static async Task<IMessage> InvokeAsync(GrpcChannel channel, MethodDescriptor method, IMessage request, int timeoutSeconds) =>
        await channel.CreateCallInvoker().AsyncUnaryCall(
            UnaryMethod(method), null, new CallOptions(deadline: DateTime.UtcNow.AddSeconds(timeoutSeconds)), request);

    private static MethodDescriptor FindMethod(string name)
    {
        foreach (var service in new[] { CsiServices.Identity, CsiServices.Node, CsiServices.Controller })
        {
            if (service.FindMethodByName(name) is { } method)
            {
                return method;
            }
        }

        throw new CliException($"'{name}' is not a CSI Identity, Node or Controller rpc", 2);
    }

    private static Method<IMessage, IMessage> UnaryMethod(MethodDescriptor method) => new(
        MethodType.Unary,
        method.Service.FullName,
        method.Name,
        Marshallers.Create<IMessage>(m => m.ToByteArray(), bytes => method.InputType.Parser.ParseFrom(bytes)),
        Marshallers.Create<IMessage>(m => m.ToByteArray(), bytes => method.OutputType.Parser.ParseFrom(bytes)));

    internal static GrpcChannel UnixChannel(string socketPath) => GrpcChannel.ForAddress("http://localhost", new GrpcChannelOptions
    {
        HttpHandler = new SocketsHttpHandler
        {
            ConnectCallback = async (_, cancellationToken) =>
            {
                var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                try
                {
                    await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath), cancellationToken);
                    return new NetworkStream(socket, ownsSocket: true);
                }
                catch
                {
                    socket.Dispose();
                    throw;
                }
            },
        },
    });

    // StatusCode.AlreadyExists -> ALREADY_EXISTS, as grpc-go and the CSI spec spell it.
    internal static string CodeName(StatusCode code) =>
        string.Concat(code.ToString().Select((c, i) => i > 0 && char.IsUpper(c) ? "_" + c : char.ToUpperInvariant(c).ToString()));
}
