using Google.Protobuf;
using Google.Protobuf.Reflection;
using UblkCsi.GrpcHosting;

namespace UblkCsi.Stores.Rpc;

/// <summary>
/// One client connection pool to a block-store server plus the retry policy: sends a call, and on
/// UNAVAILABLE waits and sends it again (a fresh connection is opened as needed) until it gets an
/// answer or the attempts run out. Thread-safe; shared by a store and every volume it opens, each
/// holding a reference: the connections close when the last holder releases it.
/// </summary>
internal sealed class BlockStoreConnection
{
    private readonly GrpcClient _client;
    private readonly RpcRetryPolicy _retry;
    private int _references = 1;

    public BlockStoreConnection(GrpcEndpoint endpoint, string? token, RpcRetryPolicy retry, TimeSpan connectTimeout)
    {
        _retry = retry;
        Server = endpoint.ToString();
        var metadata = token is null
            ? null
            : new Dictionary<string, string>(StringComparer.Ordinal) { [BlockStoreProtocol.AuthorizationMetadata] = BlockStoreProtocol.BearerPrefix + token };
        _client = new GrpcClient(endpoint, new GrpcClientOptions
        {
            MaxReceiveMessageBytes = BlockStoreProtocol.MaxMessageBytes,
            ConnectTimeout = connectTimeout,
            Metadata = metadata,
        });
    }

    /// <summary>The server, for messages (never contains the token).</summary>
    public string Server { get; }

    /// <summary>
    /// Calls <paramref name="method"/>, retrying while the server is unreachable. Before each retry
    /// <paramref name="markRetry"/> (a static lambda, so nothing is allocated for it) stamps the
    /// retry number into the request, which lets the server order a retried mutation after the lost one.
    /// Throws the last <see cref="RpcException"/> when the server answered with an error or stayed unreachable.
    /// </summary>
    public async Task<TResponse> CallAsync<TRequest, TResponse>(
        MethodDescriptor method, TRequest request, CancellationToken cancellationToken, Action<TRequest, uint>? markRetry = null)
        where TRequest : IMessage<TRequest>
        where TResponse : IMessage<TResponse>, new()
    {
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                return await _client.CallAsync<TRequest, TResponse>(method, request, deadline: null, cancellationToken).ConfigureAwait(false);
            }
            catch (RpcException e) when (RpcRetryPolicy.IsRetryable(e) && attempt < _retry.MaxAttempts && !cancellationToken.IsCancellationRequested)
            {
                await Task.Delay(_retry.BackoffBefore(attempt), cancellationToken).ConfigureAwait(false);
                markRetry?.Invoke(request, (uint)attempt);
            }
            catch (RpcException e) when (RpcRetryPolicy.IsRetryable(e))
            {
                throw new RpcException(e.StatusCode, $"{e.Detail} (gave up after {attempt} attempt{(attempt == 1 ? "" : "s")})", e, e.StatusDetails);
            }
        }
    }

    /// <summary>Adds a holder (a newly opened volume).</summary>
    public BlockStoreConnection AddReference()
    {
        if (Interlocked.Increment(ref _references) <= 1)
        {
            throw new ObjectDisposedException(nameof(BlockStoreConnection), "the rpc store was disposed");
        }

        return this;
    }

    /// <summary>Drops a holder; the last one closes the connections.</summary>
    public void Release()
    {
        if (Interlocked.Decrement(ref _references) == 0)
        {
            _client.Dispose();
        }
    }
}
