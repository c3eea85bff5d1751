using Google.Protobuf;
using Google.Protobuf.Reflection;
using Grpc.Core;
using Grpc.Net.Client;

namespace UblkCsi.TestSupport;

/// <summary>
/// Unary calls named by their protobuf method descriptor, with any request message type: tests
/// iterate over a service's methods and send what a broken or foreign client would send.
/// </summary>
public static class DescriptorCalls
{
    public static async Task<TResponse> CallAsync<TRequest, TResponse>(
        this GrpcChannel channel, MethodDescriptor method, TRequest request, DateTime? deadline = null, Metadata? headers = null)
        where TRequest : class, IMessage<TRequest>
        where TResponse : class, IMessage<TResponse>, new()
    {
        var call = new Method<TRequest, TResponse>(
            MethodType.Unary,
            method.Service.FullName,
            method.Name,
            Marshallers.Create<TRequest>(static r => r.ToByteArray(), static _ => throw new NotSupportedException("requests are only sent")),
            Marshallers.Create<TResponse>(static r => r.ToByteArray(), static bytes => Parser<TResponse>.Instance.ParseFrom(bytes)));
        using var pending = channel.CreateCallInvoker().AsyncUnaryCall(call, null, new CallOptions(headers, deadline), request);
        return await pending.ResponseAsync;
    }

    private static class Parser<T>
        where T : IMessage<T>, new()
    {
        public static readonly MessageParser<T> Instance = new(static () => new T());
    }
}
