using UblkCsi.GrpcEndpoints;
using Grpc.Core;
using Grpc.Net.Client;
using UblkCsi.BlockStore.V1;

namespace UblkCsi.Stores.Rpc;

/// <summary>One unary call of the generated block-store client (a static lambda, so passing it allocates nothing).</summary>
internal delegate AsyncUnaryCall<TResponse> BlockStoreCall<TRequest, TResponse>(BlockStore.V1.BlockStore.BlockStoreClient client, TRequest request, CallOptions options);

/// <summary>
/// One Grpc.Net.Client channel to a block-store server plus the retry policy: sends a call, and on
/// UNAVAILABLE waits and sends it again (the channel reconnects as needed) until it gets an answer or
/// the attempts run out. The retry loop is ours, not the channel's retry policy, because a retried
/// mutation must carry its attempt number for the server's fence. Thread-safe; shared by a store and
/// every volume it opens, each holding a reference: the channel closes when the last holder releases it.
/// </summary>
internal sealed class BlockStoreConnection
{
    private readonly GrpcChannel _channel;
    private readonly BlockStore.V1.BlockStore.BlockStoreClient _client;
    private readonly Metadata? _headers;
    private readonly RpcRetryPolicy _retry;
    private readonly ServerCertificateCheck? _certificateCheck;
    private int _references = 1;

    public BlockStoreConnection(GrpcEndpoint endpoint, string? token, RpcRetryPolicy retry, TimeSpan connectTimeout, RpcTls? tls)
    {
        _retry = retry;
        Server = endpoint.ToString();
        _certificateCheck = tls is null ? null : new ServerCertificateCheck(tls, endpoint.Host ?? "localhost");

        // The token travels as metadata, never inside a message, so the call log can never show it.
        _headers = token is null ? null : new Metadata { { BlockStoreProtocol.AuthorizationMetadata, BlockStoreProtocol.BearerPrefix + token } };
        _channel = GrpcChannels.Create(endpoint, new GrpcChannelSettings
        {
            MaxReceiveMessageBytes = BlockStoreProtocol.MaxMessageBytes,
            ConnectTimeout = connectTimeout,
            Tls = _certificateCheck?.ClientOptions(),
        });
        CallInvoker = _channel.CreateCallInvoker();
        _client = new BlockStore.V1.BlockStore.BlockStoreClient(CallInvoker);
    }

    /// <summary>The server, for messages (never contains the token).</summary>
    public string Server { get; }

    /// <summary>The channel's invoker, for the data path's stream (its own method and codecs).</summary>
    public CallInvoker CallInvoker { get; }

    /// <summary>The metadata every call carries (the token, when there is one). Never logged.</summary>
    public Metadata? Headers => _headers;

    /// <summary>The retry policy of calls that cannot reach the server.</summary>
    public RpcRetryPolicy Retry => _retry;

    /// <summary>
    /// Calls <paramref name="call"/>, retrying while the server is unreachable. Before each retry
    /// <paramref name="markRetry"/> (a static lambda, so nothing is allocated for it) stamps the
    /// retry number into the request, which lets the server order a retried mutation after the lost one.
    /// Throws the last <see cref="RpcException"/> when the server answered with an error or stayed unreachable.
    /// </summary>
    public async Task<TResponse> CallAsync<TRequest, TResponse>(
        BlockStoreCall<TRequest, TResponse> call, TRequest request, CancellationToken cancellationToken, Action<TRequest, uint>? markRetry = null)
    {
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                using var pending = call(_client, request, new CallOptions(_headers, cancellationToken: cancellationToken));
                return await pending.ResponseAsync.ConfigureAwait(false);
            }
            catch (RpcException e) when (AsHandshakeFailure(e) is { } refused)
            {
                throw refused;
            }
            catch (RpcException e) when (RpcRetryPolicy.IsRetryable(e) && attempt < _retry.MaxAttempts && !cancellationToken.IsCancellationRequested)
            {
                await Task.Delay(_retry.BackoffBefore(attempt), cancellationToken).ConfigureAwait(false);
                markRetry?.Invoke(request, (uint)attempt);
            }
            catch (RpcException e) when (RpcRetryPolicy.IsRetryable(e))
            {
                throw new RpcException(
                    new Status(e.StatusCode, $"{e.Status.Detail} (gave up after {attempt} attempt{(attempt == 1 ? "" : "s")})", e.Status.DebugException),
                    e.Trailers);
            }
        }
    }

    /// <summary>A TLS handshake failure behind <paramref name="e"/> as a FAILED_PRECONDITION naming the cause, or null.</summary>
    public RpcException? AsHandshakeFailure(RpcException e) => _certificateCheck?.AsHandshakeFailure(e, Server);

    /// <summary>Adds a holder (a newly opened volume).</summary>
    public BlockStoreConnection AddReference()
    {
        if (Interlocked.Increment(ref _references) <= 1)
        {
            throw new ObjectDisposedException(nameof(BlockStoreConnection), "the rpc store was disposed");
        }

        return this;
    }

    /// <summary>Drops a holder; the last one closes the channel.</summary>
    public void Release()
    {
        if (Interlocked.Decrement(ref _references) == 0)
        {
            _channel.Dispose();
        }
    }
}
