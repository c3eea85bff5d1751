using Microsoft.Extensions.DependencyInjection;

namespace UblkCsi.GrpcHosting;

/// <summary>
/// A service that needs more than its generated binding, e.g. an <c>IServiceMethodProvider&lt;T&gt;</c>
/// that binds one method with its own marshallers. <see cref="GrpcServer.AddService{TService}"/> calls it
/// while the server's services are registered.
/// </summary>
public interface IGrpcServiceSetup
{
    /// <summary>Adds the service's extra registrations.</summary>
    void ConfigureServices(IServiceCollection services);
}
