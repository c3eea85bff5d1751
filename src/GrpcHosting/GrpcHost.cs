using UblkCsi.GrpcEndpoints;
using System.Globalization;
using Microsoft.Extensions.Logging;
using UblkCsi.GrpcHosting.Logging;
using UblkCsi.Hosting;

namespace UblkCsi.GrpcHosting;

/// <summary>The options every gRPC host takes: where it listens and how large a request may be.</summary>
/// <param name="Endpoint">The listen address.</param>
/// <param name="MaxMessageBytes">Largest accepted request message.</param>
/// <param name="MetricsAddress">Where to serve Prometheus metrics, or null (the default) for none.</param>
public sealed record GrpcHostOptions(GrpcEndpoint Endpoint, int MaxMessageBytes, Metrics.MetricsAddress? MetricsAddress = null)
{
    /// <summary>The declarations of the shared gRPC options.</summary>
    public static IReadOnlyList<HostOption> Declarations { get; } =
    [
        new("--endpoint", "CSI_ENDPOINT", "gRPC listen address: unix:///path.sock or tcp://host:port (default unix:///csi/csi.sock)"),
        new("--max-message-bytes", "MAX_MESSAGE_BYTES", "largest accepted request message in bytes (default 4194304)"),
        new("--metrics-address", "METRICS_ADDRESS", "serve Prometheus metrics at http://HOST:PORT/metrics (default: off)"),
    ];

    /// <summary>Reads the shared gRPC options; throws <see cref="HostOptionException"/> naming the first invalid one.</summary>
    public static GrpcHostOptions From(HostCommandLine line) => new(
        line.Parse("--endpoint", "unix:///csi/csi.sock", GrpcEndpoint.Parse),
        line.Parse("--max-message-bytes", "4194304", ParseMessageBytes),
        line.Get("--metrics-address") is { } metrics ? line.Parse("--metrics-address", metrics, Metrics.MetricsAddress.Parse) : null);

    /// <summary>Server options for these host options: endpoint, message size, metrics, and which request fields are secret.</summary>
    public GrpcServerOptions ToServerOptions(Logging.SensitiveFieldPolicy sensitiveFields) => new()
    {
        Endpoint = Endpoint,
        MaxReceiveMessageBytes = MaxMessageBytes,
        MetricsAddress = MetricsAddress,
        SensitiveFields = sensitiveFields,
    };

    private static int ParseMessageBytes(string value)
    {
        const int Min = 1024;
        const int Max = 256 * 1024 * 1024;
        if (!int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var bytes) || bytes < Min || bytes > Max)
        {
            throw new FormatException($"'{value}' is not a byte count between {Min} and {Max}");
        }

        return bytes;
    }
}

/// <summary>One server of a <see cref="GrpcRunningHost"/>: its options and the services it serves.</summary>
/// <param name="Options">Endpoint, limits, redaction, metrics.</param>
/// <param name="AddServices">Adds the services this server serves.</param>
public sealed record GrpcServerSetup(GrpcServerOptions Options, Action<GrpcServer> AddServices);

/// <summary>
/// Started <see cref="GrpcServer"/>s (usually one) as the host runner sees them, plus what their services
/// own: stopping stops every server (in-flight calls finish), then disposing disposes the owned
/// resources in reverse order, so nothing owned goes away while a call may still use it.
/// </summary>
public sealed class GrpcRunningHost : IRunningHost
{
    private readonly GrpcServer[] _servers;
    private readonly IAsyncDisposable[] _owned;

    private GrpcRunningHost(GrpcServer[] servers, IAsyncDisposable[] owned)
    {
        _servers = servers;
        _owned = owned;
    }

    /// <inheritdoc/>
    public string Address => _servers[0].Endpoint.ToString();

    /// <summary>The first server (its bound endpoint, its services).</summary>
    public GrpcServer Server => _servers[0];

    /// <summary>Every server, in the order they were set up.</summary>
    public IReadOnlyList<GrpcServer> Servers => _servers;

    /// <summary>
    /// Creates the server, lets <paramref name="addServices"/> add services, and starts it. On failure
    /// the server and <paramref name="owned"/> are disposed before the exception propagates.
    /// </summary>
    public static Task<IRunningHost> StartAsync(
        GrpcServerOptions options, ILoggerFactory loggerFactory, Action<GrpcServer> addServices, CancellationToken cancellationToken, params IAsyncDisposable[] owned) =>
        StartAsync([new GrpcServerSetup(options, addServices)], loggerFactory, cancellationToken, owned);

    /// <summary>
    /// Creates and starts one server per setup, in order; <see cref="Address"/> is the first one's. On
    /// failure every server and <paramref name="owned"/> are disposed before the exception propagates.
    /// </summary>
    public static async Task<IRunningHost> StartAsync(
        IReadOnlyList<GrpcServerSetup> setups, ILoggerFactory loggerFactory, CancellationToken cancellationToken, params IAsyncDisposable[] owned)
    {
        ArgumentOutOfRangeException.ThrowIfZero(setups.Count);
        var servers = new List<GrpcServer>(setups.Count);
        try
        {
            foreach (var setup in setups)
            {
                var server = new GrpcServer(setup.Options, loggerFactory);
                servers.Add(server);
                setup.AddServices(server);
                await server.StartAsync(cancellationToken);
            }

            return new GrpcRunningHost([.. servers], owned);
        }
        catch
        {
            await DisposeServersAsync(servers);
            await DisposeAllAsync(owned);
            throw;
        }
    }

    /// <inheritdoc/>
    public Task StopAsync() => Task.WhenAll(_servers.Select(s => s.StopAsync()));

    /// <inheritdoc/>
    public async ValueTask DisposeAsync()
    {
        await DisposeServersAsync(_servers);
        await DisposeAllAsync(_owned);
    }

    private static async Task DisposeServersAsync(IEnumerable<GrpcServer> servers)
    {
        foreach (var server in servers)
        {
            await server.DisposeAsync();
        }
    }

    private static async Task DisposeAllAsync(IAsyncDisposable[] owned)
    {
        for (var i = owned.Length - 1; i >= 0; i--)
        {
            await owned[i].DisposeAsync();
        }
    }
}
