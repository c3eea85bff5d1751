using Microsoft.Extensions.Logging.Abstractions;
using Ublkcsi.Testing.V1;

namespace UblkCsi.GrpcHosting.Tests;

/// <summary>A service that does not match its descriptor must fail when added, naming the problem.</summary>
public sealed class ServiceBindingTests
{
    private static GrpcServer NewServer() =>
        new(new GrpcServerOptions { Endpoint = GrpcEndpoint.Unix("/tmp/never-started.sock") }, NullLoggerFactory.Instance);

    [Fact]
    public void MissingMethodFailsNamingTheExpectedSignature()
    {
        var e = Assert.Throws<InvalidOperationException>(() => NewServer().AddService(EchoService.Descriptor, new OnlyEcho(), "Watch"));

        Assert.Contains("ublkcsi.testing.v1.Echo/Fail", e.Message);
        Assert.Contains("Task<EchoResponse> Fail(EchoRequest request, ServerCallContext context)", e.Message);
    }

    [Fact]
    public void WrongSignatureFails()
    {
        var e = Assert.Throws<InvalidOperationException>(() => NewServer().AddService(EchoService.Descriptor, new WrongTypes(), "Fail", "Slow", "Watch"));

        Assert.Contains("WrongTypes.Echo has the wrong signature", e.Message);
    }

    [Fact]
    public void StreamingMethodMustBeListedAsUnimplemented()
    {
        var e = Assert.Throws<InvalidOperationException>(() => NewServer().AddService(EchoService.Descriptor, new EchoService()));

        Assert.Contains("Watch is a streaming method", e.Message);
    }

    [Fact]
    public void UnimplementedListMustNameRealMethods()
    {
        var e = Assert.Throws<ArgumentException>(() => NewServer().AddService(EchoService.Descriptor, new EchoService(), "Watch", "Typo"));

        Assert.Contains("'Typo'", e.Message);
    }

    [Fact]
    public void ImplementedMethodListedAsUnimplementedFails()
    {
        var e = Assert.Throws<ArgumentException>(() => NewServer().AddService(EchoService.Descriptor, new EchoService(), "Watch", "Echo"));

        Assert.Contains("EchoService.Echo exists", e.Message);
    }

    [Fact]
    public void SameServiceTwiceFails()
    {
        var server = NewServer();
        EchoService.Serve(server, new EchoService());

        Assert.Throws<InvalidOperationException>(() => EchoService.Serve(server, new EchoService()));
    }

    private sealed class OnlyEcho
    {
        public Task<EchoResponse> Echo(EchoRequest request, ServerCallContext context) => Task.FromResult(new EchoResponse());
    }

    private sealed class WrongTypes
    {
        public Task<EchoRequest> Echo(EchoRequest request, ServerCallContext context) => Task.FromResult(request);
    }
}
