using Grpc.Core;
using UblkCsi.Stores.Rpc.Streaming;

namespace UblkCsi.BlockStoreServer.Service.Streaming;

/// <summary>
/// Binds the generated BlockStore methods unchanged, except Stream, which is bound with
/// <see cref="StreamIo.Method"/>: the same wire bytes, read and written by pooled codecs instead of the
/// generated message classes (which would allocate and copy every payload).
/// </summary>
internal sealed class PooledStreamBinder(ServiceBinderBase inner, BlockStoreService? service) : ServiceBinderBase
{
    public override void AddMethod<TRequest, TResponse>(Method<TRequest, TResponse> method, UnaryServerMethod<TRequest, TResponse>? handler) =>
        inner.AddMethod(method, handler);

    public override void AddMethod<TRequest, TResponse>(Method<TRequest, TResponse> method, ClientStreamingServerMethod<TRequest, TResponse>? handler) =>
        inner.AddMethod(method, handler);

    public override void AddMethod<TRequest, TResponse>(Method<TRequest, TResponse> method, ServerStreamingServerMethod<TRequest, TResponse>? handler) =>
        inner.AddMethod(method, handler);

    public override void AddMethod<TRequest, TResponse>(Method<TRequest, TResponse> method, DuplexStreamingServerMethod<TRequest, TResponse>? handler)
    {
        if (method.Name == IoStreamFields.MethodName)
        {
            inner.AddMethod(StreamIo.Method, service is null ? null : new DuplexStreamingServerMethod<StreamIo, StreamIo>(service.Stream));
            return;
        }

        inner.AddMethod(method, handler);
    }
}
