using System.Buffers;
using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using Google.Protobuf;
using Google.Protobuf.Reflection;
using UblkCsi.GrpcHosting.Client;
using UblkCsi.GrpcHosting.Wire;

namespace UblkCsi.GrpcHosting;

/// <summary>
/// A unary gRPC client over HTTP/2 cleartext (unix socket or TCP). Thread-safe and meant to be
/// shared: all calls multiplex over one pooled set of HTTP/2 connections. A call returns the
/// response or throws <see cref="RpcException"/> with the server's status, DEADLINE_EXCEEDED when
/// the deadline passes, or UNAVAILABLE when the server cannot be reached; cancelling the caller's
/// token throws <see cref="OperationCanceledException"/>.
/// </summary>
public sealed class GrpcClient : IDisposable
{
    private readonly HttpClient _http;
    private readonly GrpcClientOptions _options;
    private readonly ConcurrentDictionary<string, Uri> _paths = new(StringComparer.Ordinal);

    /// <summary>Creates a client for <paramref name="endpoint"/>; connections open lazily on the first call.</summary>
    public GrpcClient(GrpcEndpoint endpoint, GrpcClientOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(endpoint);
        _options = options ?? new GrpcClientOptions();
        _options.Validate();
        Endpoint = endpoint;

        var handler = new SocketsHttpHandler
        {
            // Past the server's stream limit, open another connection instead of queueing calls.
            EnableMultipleHttp2Connections = true,
            ConnectTimeout = _options.ConnectTimeout,
            InitialHttp2StreamWindowSize = 8 * 1024 * 1024,
            PooledConnectionIdleTimeout = TimeSpan.FromMinutes(5),
            KeepAlivePingDelay = TimeSpan.FromSeconds(60),
            KeepAlivePingTimeout = TimeSpan.FromSeconds(20),
            UseProxy = false,
            UseCookies = false,
            AllowAutoRedirect = false,
            AutomaticDecompression = DecompressionMethods.None,
        };

        Uri baseAddress;
        if (endpoint.Kind == GrpcEndpointKind.Unix)
        {
            var socketPath = new UnixDomainSocketEndPoint(endpoint.UnixPath!);
            handler.ConnectCallback = (_, cancellationToken) => ConnectUnixAsync(socketPath, cancellationToken);
            baseAddress = new Uri("http://localhost");
        }
        else
        {
            var host = endpoint.Host!.Contains(':', StringComparison.Ordinal) ? $"[{endpoint.Host}]" : endpoint.Host;
            baseAddress = new Uri($"http://{host}:{endpoint.Port}");
        }

        _http = new HttpClient(handler)
        {
            BaseAddress = baseAddress,
            DefaultRequestVersion = HttpVersion.Version20,
            DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact,
            Timeout = Timeout.InfiniteTimeSpan,
        };
    }

    /// <summary>The server this client talks to.</summary>
    public GrpcEndpoint Endpoint { get; }

    /// <summary>Calls the unary <paramref name="method"/>; its request and response types must be <typeparamref name="TRequest"/> and <typeparamref name="TResponse"/>.</summary>
    /// <param name="method">The rpc, from the generated file descriptor.</param>
    /// <param name="request">The request message.</param>
    /// <param name="deadline">Optional UTC deadline, sent to the server as grpc-timeout and enforced locally.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    public Task<TResponse> CallAsync<TRequest, TResponse>(MethodDescriptor method, TRequest request, DateTime? deadline = null, CancellationToken cancellationToken = default)
        where TRequest : IMessage<TRequest>
        where TResponse : IMessage<TResponse>, new()
    {
        ArgumentNullException.ThrowIfNull(method);
        if (method.InputType.ClrType != typeof(TRequest) || method.OutputType.ClrType != typeof(TResponse))
        {
            throw new ArgumentException(
                $"{method.FullName} takes {method.InputType.ClrType?.Name} and returns {method.OutputType.ClrType?.Name}, not {typeof(TRequest).Name} -> {typeof(TResponse).Name}",
                nameof(method));
        }

        if (method.IsClientStreaming || method.IsServerStreaming)
        {
            throw new ArgumentException($"{method.FullName} is a streaming method; this client makes unary calls only", nameof(method));
        }

        return CallAsync<TRequest, TResponse>($"/{method.Service.FullName}/{method.Name}", request, deadline, cancellationToken);
    }

    /// <summary>Calls the unary method at <paramref name="path"/> (<c>/package.Service/Method</c>).</summary>
    /// <param name="path">The method path, e.g. <c>/csi.v1.Identity/Probe</c>.</param>
    /// <param name="request">The request message.</param>
    /// <param name="deadline">Optional UTC deadline, sent to the server as grpc-timeout and enforced locally.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    public async Task<TResponse> CallAsync<TRequest, TResponse>(string path, TRequest request, DateTime? deadline = null, CancellationToken cancellationToken = default)
        where TRequest : IMessage<TRequest>
        where TResponse : IMessage<TResponse>, new()
    {
        ArgumentNullException.ThrowIfNull(request);
        var uri = _paths.TryGetValue(path, out var cached) ? cached : _paths.GetOrAdd(path, ValidatePath(path));

        CancellationTokenSource? deadlineSource = null;
        var token = cancellationToken;
        string? timeoutHeader = null;
        if (deadline is { } when)
        {
            var remaining = when.ToUniversalTime() - DateTime.UtcNow;
            if (remaining <= TimeSpan.Zero)
            {
                throw new RpcException(StatusCode.DeadlineExceeded, "deadline passed before the call started");
            }

            timeoutHeader = GrpcTimeout.Format(remaining);
            deadlineSource = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            deadlineSource.CancelAfter(remaining);
            token = deadlineSource.Token;
        }

        using var message = new HttpRequestMessage(HttpMethod.Post, uri)
        {
            Version = HttpVersion.Version20,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
        };
        message.Headers.TryAddWithoutValidation("te", "trailers");
        if (_options.Metadata is { } metadata)
        {
            foreach (var (key, value) in metadata)
            {
                message.Headers.TryAddWithoutValidation(key, value);
            }
        }
        if (timeoutHeader is not null)
        {
            message.Headers.TryAddWithoutValidation(GrpcProtocol.TimeoutHeader, timeoutHeader);
        }

        message.Content = new GrpcRequestContent(request);
        try
        {
            using var response = await _http.SendAsync(message, HttpCompletionOption.ResponseHeadersRead, token);
            return await ReadResponseAsync<TResponse>(response, token);
        }
        catch (OperationCanceledException) when (deadlineSource is not null && !cancellationToken.IsCancellationRequested)
        {
            throw new RpcException(StatusCode.DeadlineExceeded, "deadline exceeded");
        }
        catch (HttpRequestException e)
        {
            throw new RpcException(StatusCode.Unavailable, $"cannot reach {Endpoint}: {e.Message}", e);
        }
        catch (IOException e) when (!token.IsCancellationRequested)
        {
            throw new RpcException(StatusCode.Unavailable, $"connection to {Endpoint} failed: {e.Message}", e);
        }
        finally
        {
            deadlineSource?.Dispose();
        }
    }

    /// <summary>Closes all connections.</summary>
    public void Dispose() => _http.Dispose();

    private async Task<TResponse> ReadResponseAsync<TResponse>(HttpResponseMessage response, CancellationToken cancellationToken)
        where TResponse : IMessage<TResponse>, new()
    {
        if (response.StatusCode != HttpStatusCode.OK)
        {
            throw new RpcException(FromHttpStatus(response.StatusCode), $"server answered HTTP {(int)response.StatusCode} instead of a gRPC response");
        }

        // Trailers-only response: the status is in the headers and there is no body.
        if (TryGetStatus(response.Headers, out var headerStatus, out var headerMessage, out var headerDetails))
        {
            throw headerStatus == StatusCode.OK
                ? new RpcException(StatusCode.Internal, "server sent OK without a response message")
                : new RpcException(headerStatus, headerMessage, statusDetails: headerDetails);
        }

        if (!GrpcProtocol.IsGrpcContentType(response.Content.Headers.ContentType?.MediaType))
        {
            throw new RpcException(StatusCode.Unknown, $"server answered content-type '{response.Content.Headers.ContentType}' instead of {GrpcProtocol.ContentType}");
        }

        var body = await response.Content.ReadAsStreamAsync(cancellationToken);

        // One pooled buffer holds the header and, for the usual small response, the message too.
        var buffer = ArrayPool<byte>.Shared.Rent(4096);
        try
        {
            var headerRead = await body.ReadAtLeastAsync(buffer.AsMemory(0, GrpcProtocol.FrameHeaderSize), GrpcProtocol.FrameHeaderSize, throwOnEndOfStream: false, cancellationToken);
            if (headerRead == 0)
            {
                throw StatusFromTrailers(response) ?? new RpcException(StatusCode.Internal, "server sent OK without a response message");
            }

            if (headerRead < GrpcProtocol.FrameHeaderSize)
            {
                throw new RpcException(StatusCode.Internal, "response ended inside a message header");
            }

            var compressedFlag = buffer[0];
            var length = BinaryPrimitives.ReadUInt32BigEndian(buffer.AsSpan(1));
            if (length > (uint)_options.MaxReceiveMessageBytes)
            {
                throw new RpcException(StatusCode.ResourceExhausted, $"received message larger than max ({length} vs. {_options.MaxReceiveMessageBytes})");
            }

            // One spare byte past the message lets the end-of-body check read into the same buffer.
            if (length >= buffer.Length)
            {
                ArrayPool<byte>.Shared.Return(buffer);
                buffer = ArrayPool<byte>.Shared.Rent((int)length + 1);
            }

            var read = await body.ReadAtLeastAsync(buffer.AsMemory(0, (int)length), (int)length, throwOnEndOfStream: false, cancellationToken);
            if (read < length)
            {
                throw new RpcException(StatusCode.Internal, $"response ended inside a message: {read} of {length} bytes arrived");
            }

            // Drain to the end so the trailers (and with them the status) arrive.
            if (await body.ReadAsync(buffer.AsMemory((int)length, 1), cancellationToken) != 0)
            {
                throw new RpcException(StatusCode.Internal, "server sent more than one response message to a unary call");
            }

            if (StatusFromTrailers(response) is { } failure)
            {
                throw failure;
            }

            return ParseResponse<TResponse>(compressedFlag, buffer.AsSpan(0, (int)length), response);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private TResponse ParseResponse<TResponse>(byte compressedFlag, ReadOnlySpan<byte> payload, HttpResponseMessage response)
        where TResponse : IMessage<TResponse>, new()
    {
        try
        {
            if (compressedFlag == 0)
            {
                return Parser<TResponse>.Instance.ParseFrom(payload);
            }

            if (compressedFlag != 1 || !response.Headers.TryGetValues(GrpcProtocol.EncodingHeader, out var encodings)
                || encodings.FirstOrDefault() != GrpcProtocol.GzipEncoding)
            {
                throw new RpcException(StatusCode.Internal, "response message is compressed with an encoding this client did not ask for");
            }

            var inflated = GzipMessageCodec.Decompress(new ReadOnlySequence<byte>(payload.ToArray()), _options.MaxReceiveMessageBytes);
            try
            {
                return Parser<TResponse>.Instance.ParseFrom(inflated.AsSpan());
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(inflated.Array!);
            }
        }
        catch (InvalidProtocolBufferException e)
        {
            throw new RpcException(StatusCode.Internal, $"response is not a valid {typeof(TResponse).Name}", e);
        }
    }

    private static RpcException? StatusFromTrailers(HttpResponseMessage response)
    {
        if (!TryGetStatus(response.TrailingHeaders, out var status, out var detail, out var details))
        {
            return new RpcException(StatusCode.Internal, "response ended without a grpc-status");
        }

        return status == StatusCode.OK ? null : new RpcException(status, detail, statusDetails: details);
    }

    private static bool TryGetStatus(HttpHeaders headers, out StatusCode status, out string detail, out byte[]? details)
    {
        status = StatusCode.Unknown;
        detail = string.Empty;
        details = null;
        if (!headers.TryGetValues(GrpcProtocol.StatusHeader, out var statusValues))
        {
            return false;
        }

        if (headers.TryGetValues(GrpcProtocol.StatusDetailsHeader, out var detailValues))
        {
            details = DecodeBinaryHeader(detailValues.FirstOrDefault());
        }

        status = GrpcStatusValues.Parse(statusValues.FirstOrDefault());
        if (headers.TryGetValues(GrpcProtocol.MessageHeader, out var messages))
        {
            detail = GrpcStatusMessage.Decode(messages.FirstOrDefault() ?? string.Empty);
        }

        return true;
    }

    /// <summary>Decodes a "-bin" header: base64 with or without padding; null when malformed.</summary>
    private static byte[]? DecodeBinaryHeader(string? value)
    {
        if (string.IsNullOrEmpty(value))
        {
            return null;
        }

        var padded = (value.Length % 4) switch
        {
            2 => value + "==",
            3 => value + "=",
            _ => value,
        };
        try
        {
            return Convert.FromBase64String(padded);
        }
        catch (FormatException)
        {
            return null;
        }
    }

    /// <summary>The gRPC spec's mapping for HTTP errors that carry no gRPC status.</summary>
    private static StatusCode FromHttpStatus(HttpStatusCode status) => status switch
    {
        HttpStatusCode.BadRequest => StatusCode.Internal,
        HttpStatusCode.Unauthorized => StatusCode.Unauthenticated,
        HttpStatusCode.Forbidden => StatusCode.PermissionDenied,
        HttpStatusCode.NotFound => StatusCode.Unimplemented,
        HttpStatusCode.TooManyRequests or HttpStatusCode.BadGateway or HttpStatusCode.ServiceUnavailable or HttpStatusCode.GatewayTimeout => StatusCode.Unavailable,
        _ => StatusCode.Unknown,
    };

    private static Uri ValidatePath(string path)
    {
        var slash = path.LastIndexOf('/');
        if (!path.StartsWith('/') || slash <= 1 || slash == path.Length - 1 || path.Count(c => c == '/') != 2)
        {
            throw new ArgumentException($"method path '{path}' must look like /package.Service/Method", nameof(path));
        }

        return new Uri(path, UriKind.Relative);
    }

    private static async ValueTask<Stream> ConnectUnixAsync(UnixDomainSocketEndPoint endpoint, CancellationToken cancellationToken)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            await socket.ConnectAsync(endpoint, cancellationToken);
            return new NetworkStream(socket, ownsSocket: true);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    private static class Parser<T>
        where T : IMessage<T>, new()
    {
        public static readonly MessageParser<T> Instance = new(() => new T());
    }
}
