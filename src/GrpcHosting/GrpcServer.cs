using System.Collections.Frozen;
using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using UblkCsi.GrpcHosting.Logging;
using UblkCsi.GrpcHosting.Server;

namespace UblkCsi.GrpcHosting;

/// <summary>
/// A unary gRPC server on Kestrel, HTTP/2 cleartext with prior knowledge, on a unix socket or
/// TCP. Services are added from their protobuf descriptors before <see cref="StartAsync"/>;
/// routes are <c>POST /package.Service/Method</c>.
/// </summary>
public sealed partial class GrpcServer : IAsyncDisposable
{
    private readonly GrpcServerOptions _options;
    private readonly ILoggerFactory _loggerFactory;
    private readonly ILogger _logger;
    private readonly Dictionary<string, MethodHandler> _methods = new(StringComparer.Ordinal);
    private WebApplication? _app;
    private bool _stopped;

    /// <summary>Creates a server; nothing listens until <see cref="StartAsync"/>.</summary>
    public GrpcServer(GrpcServerOptions options, ILoggerFactory loggerFactory)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(loggerFactory);
        options.Validate();
        _options = options;
        _loggerFactory = loggerFactory;
        _logger = loggerFactory.CreateLogger<GrpcServer>();
        Endpoint = options.Endpoint;
    }

    /// <summary>The endpoint served; after start, a TCP port of 0 is replaced by the bound port.</summary>
    public GrpcEndpoint Endpoint { get; private set; }

    /// <summary>
    /// Serves <paramref name="service"/> with <paramref name="implementation"/>: a plain object with
    /// one public method per rpc, named like the rpc, taking the request message and a
    /// <see cref="ServerCallContext"/> and returning <c>Task&lt;Response&gt;</c> or <c>ValueTask&lt;Response&gt;</c>.
    /// Methods named in <paramref name="unimplementedMethods"/> answer UNIMPLEMENTED. A missing or
    /// mistyped method throws here, so a bad service never starts.
    /// </summary>
    public GrpcServer AddService(Google.Protobuf.Reflection.ServiceDescriptor service, object implementation, params IReadOnlyCollection<string> unimplementedMethods)
    {
        if (_app is not null)
        {
            throw new InvalidOperationException("services must be added before the server starts");
        }

        foreach (var handler in ServiceBinder.Bind(service, implementation, unimplementedMethods))
        {
            if (!_methods.TryAdd(handler.Path, handler))
            {
                throw new InvalidOperationException($"{service.FullName} is already served");
            }
        }

        return this;
    }

    /// <summary>Binds the endpoint and starts serving. Throws <see cref="IOException"/> when the endpoint is taken.</summary>
    public async Task StartAsync(CancellationToken cancellationToken = default)
    {
        if (_app is not null)
        {
            throw new InvalidOperationException("the server is already started");
        }

        if (_options.Endpoint.Kind == GrpcEndpointKind.Unix
            && await UnixSocketFile.PrepareForBindAsync(_options.Endpoint.UnixPath!, cancellationToken))
        {
            StaleSocketRemoved(_logger, _options.Endpoint.UnixPath!);
        }

        var listenAddress = _options.Endpoint.Kind == GrpcEndpointKind.Tcp
            ? await ResolveListenAddressAsync(_options.Endpoint.Host!, cancellationToken)
            : null;

        var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions());
        builder.Services.AddSingleton(_loggerFactory);
        builder.Services.AddSingleton(typeof(ILogger<>), typeof(Logger<>));
        builder.Services.AddSingleton<IHostLifetime, PassiveHostLifetime>();
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = _options.ShutdownTimeout);
        builder.WebHost.UseKestrelCore().ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;

            // Message size is enforced per gRPC message, not per HTTP body.
            kestrel.Limits.MaxRequestBodySize = null;

            // Large windows let a 1 MiB block-store write arrive without stalling on WINDOW_UPDATEs.
            kestrel.Limits.Http2.InitialConnectionWindowSize = 16 * 1024 * 1024;
            kestrel.Limits.Http2.InitialStreamWindowSize = 8 * 1024 * 1024;
            kestrel.Limits.Http2.MaxStreamsPerConnection = 256;
            if (listenAddress is null)
            {
                kestrel.ListenUnixSocket(_options.Endpoint.UnixPath!, l => l.Protocols = HttpProtocols.Http2);
            }
            else
            {
                kestrel.Listen(listenAddress, _options.Endpoint.Port, l => l.Protocols = HttpProtocols.Http2);
            }
        });

        var app = builder.Build();
        var redactor = new MessageRedactor(_options.SensitiveFields);
        var dispatcher = new GrpcDispatcher(
            _methods.ToFrozenDictionary(StringComparer.Ordinal),
            _options.MaxReceiveMessageBytes,
            new CallLogger(_loggerFactory.CreateLogger("UblkCsi.GrpcHosting.Calls"), redactor));
        app.Run(dispatcher.HandleAsync);
        await app.StartAsync(cancellationToken);
        _app = app;

        if (listenAddress is not null)
        {
            var bound = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
            Endpoint = GrpcEndpoint.Tcp(_options.Endpoint.Host!, new Uri(bound).Port);
        }

        Listening(_logger, Endpoint.ToString(), _methods.Count);
    }

    /// <summary>
    /// Stops accepting calls, lets in-flight calls finish (up to <see cref="GrpcServerOptions.ShutdownTimeout"/>
    /// or until <paramref name="cancellationToken"/> fires), then removes the socket file.
    /// </summary>
    public async Task StopAsync(CancellationToken cancellationToken = default)
    {
        if (_app is null || _stopped)
        {
            return;
        }

        _stopped = true;
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(_options.ShutdownTimeout);
        try
        {
            await _app.StopAsync(timeout.Token);
        }
        finally
        {
            if (_options.Endpoint.Kind == GrpcEndpointKind.Unix)
            {
                UnixSocketFile.RemoveIfSocket(_options.Endpoint.UnixPath!);
            }

            Stopped(_logger, Endpoint.ToString());
        }
    }

    /// <summary>Stops (gracefully) if running and releases the listener.</summary>
    public async ValueTask DisposeAsync()
    {
        if (_app is null)
        {
            return;
        }

        await StopAsync();
        await _app.DisposeAsync();
    }

    private static async Task<IPAddress> ResolveListenAddressAsync(string host, CancellationToken cancellationToken)
    {
        if (host is "*" or "0.0.0.0")
        {
            return IPAddress.Any;
        }

        if (IPAddress.TryParse(host, out var address))
        {
            return address;
        }

        if (string.Equals(host, "localhost", StringComparison.OrdinalIgnoreCase))
        {
            return IPAddress.Loopback;
        }

        var addresses = await Dns.GetHostAddressesAsync(host, cancellationToken);
        return addresses.Length > 0 ? addresses[0] : throw new IOException($"cannot listen on {host}: the name resolves to no address");
    }

    [LoggerMessage(EventId = 10, Level = LogLevel.Information, Message = "removed stale socket {Path} left by a previous process")]
    private static partial void StaleSocketRemoved(ILogger logger, string path);

    [LoggerMessage(EventId = 11, Level = LogLevel.Information, Message = "gRPC server listening on {Endpoint} with {MethodCount} methods")]
    private static partial void Listening(ILogger logger, string endpoint, int methodCount);

    [LoggerMessage(EventId = 12, Level = LogLevel.Information, Message = "gRPC server on {Endpoint} stopped")]
    private static partial void Stopped(ILogger logger, string endpoint);
}
