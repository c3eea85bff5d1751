using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Csi.V1;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using UblkCsi.GrpcEndpoints;
using UblkCsi.GrpcHosting;

using UblkCsi.Cli;

namespace UblkCsi.Benchmarks;

/// <summary>
/// <c>ublk-csi bench-grpc</c>: the cost of the gRPC layer. Unary Identity calls through
/// GrpcServer (Grpc.AspNetCore) and a Grpc.Net.Client channel on a unix socket are measured against a baseline taken in the same run:
/// raw HTTP/2 POSTs with the same body size to a bare Kestrel endpoint on the same kind of socket.
/// Each figure is printed with its ratio to that baseline.
/// </summary>
internal static class BenchGrpcCommand
{
    public const string Summary = "benchmark unary gRPC calls against raw HTTP/2 on a unix socket";

    private const string Usage =
        "usage: ublk-csi bench-grpc [--calls N] [--concurrency N] [--payload-bytes N]\n" +
        "  --calls N          calls per run (default 20000, 100..10000000)\n" +
        "  --concurrency N    callers in the concurrent runs (default 16, 1..1024)\n" +
        "  --payload-bytes N  also measure requests carrying N bytes (default 0: skip; e.g. 1048576)";

    public static async Task<int> RunAsync(string[] args)
    {
        var calls = 20_000;
        var concurrency = 16;
        var payloadBytes = 0;
        for (var i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--calls": calls = CommandOptions.ParseInt(args[i], CommandOptions.Value(args, ref i), 100, 10_000_000); break;
                case "--concurrency": concurrency = CommandOptions.ParseInt(args[i], CommandOptions.Value(args, ref i), 1, 1024); break;
                case "--payload-bytes": payloadBytes = CommandOptions.ParseInt(args[i], CommandOptions.Value(args, ref i), 0, 64 * 1024 * 1024); break;
                case "-h" or "--help": Console.Out.WriteLine(Usage); return 0;
                default: throw new CliException($"unknown option '{args[i]}'\n{Usage}", 2);
            }
        }

        var directory = Directory.CreateTempSubdirectory("ublk-bench-");
        try
        {
            await using var grpc = await StartGrpcServerAsync(Path.Combine(directory.FullName, "grpc.sock"), payloadBytes);
            await using var raw = await StartRawServerAsync(Path.Combine(directory.FullName, "raw.sock"));
            using var channel = GrpcChannels.Create(grpc.Endpoint, new GrpcChannelSettings { MaxReceiveMessageBytes = Math.Max(4 << 20, payloadBytes + 1024) });
            var grpcClient = new Identity.IdentityClient(channel);
            using var rawClient = RawClient(Path.Combine(directory.FullName, "raw.sock"));

            Console.Out.WriteLine($"bench-grpc: {calls} calls per run, concurrency {concurrency}, unix socket, HTTP/2 cleartext, {Environment.ProcessorCount} CPUs");
            Console.Out.WriteLine("baseline: raw HTTP/2 POST with an empty body to a bare Kestrel endpoint, measured in this run");
            Console.Out.WriteLine();
            Console.Out.WriteLine($"{"run",-44} {"p50 µs",9} {"p99 µs",9} {"calls/s",10}   {"p50 vs raw",10} {"calls/s vs raw",14}");

            Func<Task> rawEmpty = () => RawPostAsync(rawClient, ReadOnlyMemory<byte>.Empty);
            Func<Task> grpcProbe = () => grpcClient.ProbeAsync(new ProbeRequest()).ResponseAsync;
            Func<Task> grpcInfo = () => grpcClient.GetPluginInfoAsync(new GetPluginInfoRequest()).ResponseAsync;

            // Warm every workload before measuring any, so no run pays for JIT tiering of another.
            foreach (var workload in new[] { rawEmpty, grpcProbe, grpcInfo })
            {
                await MeasureAsync(workload, Math.Min(calls, 5000), 1);
                await MeasureAsync(workload, Math.Min(calls, 5000), concurrency);
            }

            foreach (var parallel in new[] { 1, concurrency })
            {
                var mode = parallel == 1 ? "sequential" : $"concurrent x{parallel}";
                var results = await MeasureInterleavedAsync([rawEmpty, grpcProbe, grpcInfo], calls, parallel);
                Print($"raw HTTP/2 empty POST, {mode}", results[0], results[0]);
                Print($"gRPC Identity.Probe, {mode}", results[1], results[0]);
                Print($"gRPC Identity.GetPluginInfo, {mode}", results[2], results[0]);
            }

            if (payloadBytes > 0)
            {
                await MeasurePayloadAsync(channel, rawClient, payloadBytes, calls, concurrency);
            }
        }
        finally
        {
            directory.Delete(recursive: true);
        }

        return 0;
    }

    /// <summary>
    /// Large requests: the gRPC request carries the bytes as field 1 (unknown to GetPluginInfoRequest,
    /// so the server parses and skips them); the raw POST carries the same number of bytes.
    /// </summary>
    private static async Task MeasurePayloadAsync(Grpc.Net.Client.GrpcChannel channel, HttpClient rawClient, int payloadBytes, int calls, int concurrency)
    {
        var bytes = new byte[payloadBytes];
        Random.Shared.NextBytes(bytes);
        var request = new BytesValue { Value = ByteString.CopyFrom(bytes) };
        var invoker = channel.CreateCallInvoker();
        var method = new Grpc.Core.Method<BytesValue, GetPluginInfoResponse>(
            Grpc.Core.MethodType.Unary,
            "csi.v1.Identity",
            "GetPluginInfo",
            Grpc.Core.Marshallers.Create(m => m.ToByteArray(), BytesValue.Parser.ParseFrom),
            Grpc.Core.Marshallers.Create(m => m.ToByteArray(), GetPluginInfoResponse.Parser.ParseFrom));
        var count = Math.Max(100, Math.Min(calls, (int)(1L * 1024 * 1024 * 1024 / Math.Max(payloadBytes, 1))));
        Console.Out.WriteLine();
        Console.Out.WriteLine($"requests carrying {payloadBytes} bytes, {count} calls per run");
        Console.Out.WriteLine($"{"run",-44} {"p50 µs",9} {"p99 µs",9} {"calls/s",10}   {"p50 vs raw",10} {"calls/s vs raw",14} {"MiB/s",8}");
        Func<Task>[] workloads =
        [
            () => RawPostAsync(rawClient, bytes),
            () => invoker.AsyncUnaryCall(method, null, default, request).ResponseAsync,
        ];
        foreach (var workload in workloads)
        {
            await MeasureAsync(workload, 100, 1);
        }

        foreach (var parallel in new[] { 1, concurrency })
        {
            var mode = parallel == 1 ? "sequential" : $"concurrent x{parallel}";
            var results = await MeasureInterleavedAsync(workloads, count, parallel);
            Print($"raw HTTP/2 POST, {mode}", results[0], results[0], payloadBytes);
            Print($"gRPC unary, {mode}", results[1], results[0], payloadBytes);
        }
    }

    private readonly record struct Result(double P50Micros, double P99Micros, double CallsPerSecond);

    /// <summary>
    /// Measures the workloads in alternating rounds, so load from other processes on the machine
    /// falls on all of them alike and the ratios stay meaningful.
    /// </summary>
    private static async Task<Result[]> MeasureInterleavedAsync(Func<Task>[] workloads, int calls, int parallel)
    {
        const int Rounds = 5;
        var latencies = workloads.Select(_ => new List<long>(calls)).ToArray();
        var elapsed = new TimeSpan[workloads.Length];
        for (var round = 0; round < Rounds; round++)
        {
            for (var w = 0; w < workloads.Length; w++)
            {
                var (roundLatencies, roundElapsed) = await MeasureAsync(workloads[w], Math.Max(parallel, calls / Rounds), parallel);
                latencies[w].AddRange(roundLatencies);
                elapsed[w] += roundElapsed;
            }
        }

        return latencies.Select((l, w) => Summarize(l, elapsed[w])).ToArray();
    }

    /// <summary>Runs <paramref name="calls"/> calls split over <paramref name="parallel"/> callers, timing each.</summary>
    private static async Task<(long[] Latencies, TimeSpan Elapsed)> MeasureAsync(Func<Task> call, int calls, int parallel)
    {
        var perCaller = calls / parallel;
        var latencies = new long[perCaller * parallel];
        var started = Stopwatch.GetTimestamp();
        await Task.WhenAll(Enumerable.Range(0, parallel).Select(worker => Task.Run(async () =>
        {
            for (var i = 0; i < perCaller; i++)
            {
                var begin = Stopwatch.GetTimestamp();
                await call();
                latencies[(worker * perCaller) + i] = Stopwatch.GetTimestamp() - begin;
            }
        })));
        return (latencies, Stopwatch.GetElapsedTime(started));
    }

    private static Result Summarize(List<long> latencies, TimeSpan elapsed)
    {
        latencies.Sort();
        double Micros(long ticks) => ticks * 1_000_000.0 / Stopwatch.Frequency;
        return new Result(
            Micros(latencies[latencies.Count / 2]),
            Micros(latencies[Math.Min(latencies.Count - 1, (int)(latencies.Count * 0.99))]),
            latencies.Count / elapsed.TotalSeconds);
    }

    private static void Print(string name, Result result, Result baseline, int payloadBytes = -1)
    {
        var line = string.Create(
            CultureInfo.InvariantCulture,
            $"{name,-44} {result.P50Micros,9:F1} {result.P99Micros,9:F1} {result.CallsPerSecond,10:F0}   {result.P50Micros / baseline.P50Micros,9:F2}x {result.CallsPerSecond / baseline.CallsPerSecond,13:F2}x");
        if (payloadBytes >= 0)
        {
            line += string.Create(CultureInfo.InvariantCulture, $" {result.CallsPerSecond * payloadBytes / (1024 * 1024),8:F0}");
        }

        Console.Out.WriteLine(line);
    }

    private static async Task<GrpcServer> StartGrpcServerAsync(string socket, int payloadBytes)
    {
        var server = new GrpcServer(
            new GrpcServerOptions
            {
                Endpoint = GrpcEndpoint.Unix(socket),
                MaxReceiveMessageBytes = Math.Max(4 << 20, payloadBytes + 1024),
            },
            NullLoggerFactory.Instance);
        server.AddService(new BenchIdentity());
        await server.StartAsync();
        return server;
    }

    /// <summary>The baseline server: Kestrel on a unix socket, HTTP/2 only, answering every request with an empty 200.</summary>
    private static async Task<WebApplication> StartRawServerAsync(string socket)
    {
        var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions());
        builder.Services.AddSingleton<Microsoft.Extensions.Logging.ILoggerFactory>(NullLoggerFactory.Instance);
        builder.WebHost.UseKestrelCore().ConfigureKestrel(kestrel =>
        {
            kestrel.Limits.MaxRequestBodySize = null;
            kestrel.Limits.Http2.InitialConnectionWindowSize = 16 * 1024 * 1024;
            kestrel.Limits.Http2.InitialStreamWindowSize = 8 * 1024 * 1024;
            kestrel.Limits.Http2.MaxStreamsPerConnection = 256;
            kestrel.ListenUnixSocket(socket, l => l.Protocols = HttpProtocols.Http2);
        });
        var app = builder.Build();
        app.Run(async context =>
        {
            // Drain the body like the gRPC server does, then answer with nothing.
            var reader = context.Request.BodyReader;
            while (true)
            {
                var result = await reader.ReadAsync();
                reader.AdvanceTo(result.Buffer.End);
                if (result.IsCompleted)
                {
                    break;
                }
            }

            context.Response.StatusCode = StatusCodes.Status200OK;
        });
        await app.StartAsync();
        return app;
    }

    private static HttpClient RawClient(string socket)
    {
        var endpoint = new UnixDomainSocketEndPoint(socket);
        var handler = new SocketsHttpHandler
        {
            EnableMultipleHttp2Connections = true,
            InitialHttp2StreamWindowSize = 8 * 1024 * 1024,
            UseProxy = false,
            ConnectCallback = async (_, ct) =>
            {
                var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                await s.ConnectAsync(endpoint, ct);
                return new NetworkStream(s, ownsSocket: true);
            },
        };
        return new HttpClient(handler) { BaseAddress = new Uri("http://localhost"), Timeout = Timeout.InfiniteTimeSpan };
    }

    private static async Task RawPostAsync(HttpClient client, ReadOnlyMemory<byte> body)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/raw")
        {
            Version = HttpVersion.Version20,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
            Content = new ReadOnlyMemoryContent(body),
        };
        using var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        response.EnsureSuccessStatusCode();
        await using var stream = await response.Content.ReadAsStreamAsync();
        await stream.CopyToAsync(Stream.Null);
    }

    /// <summary>A minimal Identity: the same shape as the plugins' services, with constant answers.</summary>
    private sealed class BenchIdentity : Identity.IdentityBase
    {
        private static readonly GetPluginInfoResponse Info = new() { Name = "ublk.csi.storage", VendorVersion = "bench" };
        private static readonly GetPluginCapabilitiesResponse Capabilities = new();
        private static readonly ProbeResponse Ready = new() { Ready = true };

        public override Task<GetPluginInfoResponse> GetPluginInfo(GetPluginInfoRequest request, Grpc.Core.ServerCallContext context) => Task.FromResult(Info);

        public override Task<GetPluginCapabilitiesResponse> GetPluginCapabilities(GetPluginCapabilitiesRequest request, Grpc.Core.ServerCallContext context) =>
            Task.FromResult(Capabilities);

        public override Task<ProbeResponse> Probe(ProbeRequest request, Grpc.Core.ServerCallContext context) => Task.FromResult(Ready);
    }
}
