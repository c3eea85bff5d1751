using Grpc.AspNetCore.Server.Model;
using Grpc.Core;
using UblkCsi.Stores.Rpc.Streaming;

namespace UblkCsi.BlockStoreServer.Service.Streaming;

/// <summary>
/// Binds the generated BlockStore methods unchanged, except Stream: the generated Stream would read and
/// write the generated message classes (allocating and copying every payload). Under Grpc.AspNetCore
/// (no service instance: it binds by reflection) Stream is left to <see cref="PooledStreamMethodProvider"/>;
/// a binder that takes handlers gets the pooled method directly.
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
        if (method.Name != IoStreamFields.MethodName)
        {
            inner.AddMethod(method, handler);
        }
        else if (service is not null)
        {
            inner.AddMethod(StreamIo.Method, new DuplexStreamingServerMethod<StreamIoBatch, StreamIoBatch>(service.Stream));
        }
    }
}

/// <summary>Adds the Stream method with the pooled codecs to Grpc.AspNetCore's routes (see <see cref="PooledStreamBinder"/>).</summary>
internal sealed class PooledStreamMethodProvider : IServiceMethodProvider<BlockStoreService>
{
    public void OnServiceMethodDiscovery(ServiceMethodProviderContext<BlockStoreService> context) =>
        context.AddDuplexStreamingMethod(StreamIo.Method, [], static (service, requests, responses, call) => service.Stream(requests, responses, call));
}
