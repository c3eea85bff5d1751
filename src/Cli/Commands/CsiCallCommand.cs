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
/// </summary>
internal static class CsiCallCommand
{
    public const string Summary = "make one CSI call (JSON in, JSON out) on a plugin's unix socket";

    private const string Usage = "usage: ublk-csi csi-call --endpoint unix:///PATH.sock [--timeout SECONDS] METHOD [REQUEST-JSON]\n"
        + "  METHOD: an Identity, Node or Controller rpc, e.g. Probe, NodeStageVolume, NodeGetVolumeStats";

    private const int CallFailedExitCode = 3;

    public static async Task<int> RunAsync(string[] args)
    {
        string? endpoint = null, methodName = null, json = null;
        var timeout = 120;
        for (var i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--endpoint": endpoint = CommandOptions.Value(args, ref i); break;
                case "--timeout": timeout = CommandOptions.ParseInt("--timeout", CommandOptions.Value(args, ref i), 1, 3600); break;
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

        if (endpoint is null || methodName is null)
        {
            throw new CliException($"--endpoint and METHOD are required\n{Usage}", 2);
        }

        if (!endpoint.StartsWith("unix://", StringComparison.Ordinal))
        {
            throw new CliException($"--endpoint '{endpoint}' must be unix:///PATH.sock", 2);
        }

        var method = FindMethod(methodName);
        IMessage request;
        try
        {
            request = JsonParser.Default.Parse(json ?? "{}", method.InputType);
        }
        catch (InvalidProtocolBufferException e)
        {
            throw new CliException($"the request is not a valid {method.InputType.Name} in JSON: {e.Message}", 2);
        }

        using var channel = UnixChannel(endpoint["unix://".Length..]);
        try
        {
            var response = await channel.CreateCallInvoker().AsyncUnaryCall(
                UnaryMethod(method), null, new CallOptions(deadline: DateTime.UtcNow.AddSeconds(timeout)), request);
            Console.Out.WriteLine(JsonFormatter.Default.Format(response));
            return 0;
        }
        catch (RpcException e)
        {
            Console.Error.WriteLine($"{CodeName(e.StatusCode)}: {e.Status.Detail}");
            return CallFailedExitCode;
        }
    }

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

    private static GrpcChannel UnixChannel(string socketPath) => GrpcChannel.ForAddress("http://localhost", new GrpcChannelOptions
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
    private static string CodeName(StatusCode code) =>
        string.Concat(code.ToString().Select((c, i) => i > 0 && char.IsUpper(c) ? "_" + c : char.ToUpperInvariant(c).ToString()));
}
