using System.Net.Http;
using System.Text;
using System.Threading.Channels;
using Grpc.Core;
using UblkCsi.Engine;
using UblkCsi.Stores.Metrics;

namespace UblkCsi.Stores.Rpc.Streaming;

/// <summary>
/// A volume's data path on one long-lived Stream call: requests are tagged with an id, written by one
/// writer loop (everything queued at that moment goes out as one batch message, so the per-message cost
/// of HTTP/2 and gRPC is shared at depth) and answered out of order, also in batches; one reader loop
/// completes them. Nothing is allocated per
/// request in the steady state: requests are pooled <see cref="IoOperation"/>s, the in-flight table and
/// the send queue reuse their storage, and the codecs move payloads between the engine's buffers and the
/// transport's buffers directly.
/// </summary>
/// <remarks>
/// A broken stream (connection dropped, server restarting or stopping) is replaced: after a backoff a new
/// stream is opened and every unanswered request is sent again, mutations with <c>attempt</c> raised so
/// the server's fence orders them after the lost attempt. Attempts follow the store's
/// <see cref="RpcRetryPolicy"/> (about 9 s, below the kernel's 30 s request timeout); a stream that
/// answers resets the count. When they run out, or the server refuses the stream (unknown volume, wrong
/// token), the requests in flight fail with the errno the status stands for; the next request opens a
/// new stream. The OPEN carries the writer generation of the volume's read-write open; once the server
/// refuses a mutation because a later writer took the volume over, <see cref="TakenOver"/> says so.
/// </remarks>
internal sealed class IoStream : IAsyncDisposable, IQueueBatchListener
{
    private readonly BlockStoreConnection _connection;
    private readonly string _volumeId;
    private readonly RpcRetryPolicy _retry;
    private readonly ReconnectCounters _reconnects;
    private readonly IoOperation _open;
    private readonly Method<IoRequestBatch, IoResponseBatch> _method;
    private readonly IoRequestBatch _outgoing = new();
    private readonly IoResponseBatch _answered = new();
    private readonly Dictionary<ulong, IoOperation> _inFlight = [];

    // Requests an engine queue thread submitted during its current dispatch batch: queued for the
    // writer loop together at the batch's end, so the loop wakes once and sends them as one message.
    private readonly List<IoOperation> _staged = new(IoStreamFields.MaxBatchEntries);
    private readonly Lock _lock = new();
    private readonly CancellationTokenSource _disposing = new();
    private Channel<IoOperation> _sendQueue = NewQueue();
    private ulong _nextId;
    private string? _takenOver;
    private Task? _supervisor;
    private bool _disposed;

    public IoStream(BlockStoreConnection connection, string volumeId, ulong writerGeneration, RpcRetryPolicy retry, ReconnectCounters reconnects)
    {
        _connection = connection;
        _volumeId = volumeId;
        _retry = retry;
        _reconnects = reconnects;
        _open = IoOperation.ForOpen(Encoding.UTF8.GetBytes(volumeId), writerGeneration);
        _method = IoStreamClientCodec.CreateMethod(BlockStoreProtocol.Service.FullName, TakeInFlight, _answered);
    }

    /// <summary>The server's refusal once a later writer took the volume over (its mutations all fail from then on); else null.</summary>
    public string? TakenOver => Volatile.Read(ref _takenOver);

    /// <summary>Sends <paramref name="op"/> and returns its completion (the op returns to its pool when awaited).</summary>
    public ValueTask SubmitAsync(IoOperation op)
    {
        var completion = op.AsValueTask();
        lock (_lock)
        {
            if (_disposed)
            {
                op.Fail(new BlockBackendException(BlockBackendException.EIO, $"volume '{_volumeId}' is closed"));
                return completion;
            }

            op.Id = ++_nextId;
            _inFlight.Add(op.Id, op);
            if (QueueIo.Current is { } queue)
            {
                _staged.Add(op);
                queue.CallAtBatchEnd(this);
            }
            else
            {
                _sendQueue.Writer.TryWrite(op);
            }

            _supervisor ??= Task.Run(SuperviseAsync);
        }

        return completion;
    }

    /// <summary>Queue thread, after its batch: hands the writer loop what the batch submitted.</summary>
    public void OnQueueBatchEnd()
    {
        lock (_lock)
        {
            foreach (var op in _staged)
            {
                _sendQueue.Writer.TryWrite(op);
            }

            _staged.Clear();
        }
    }

    public async ValueTask DisposeAsync()
    {
        Task? supervisor;
        lock (_lock)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            _sendQueue.Writer.TryComplete();
            supervisor = _supervisor;
        }

        await _disposing.CancelAsync().ConfigureAwait(false);
        if (supervisor is not null)
        {
            await supervisor.ConfigureAwait(false);
        }

        FailInFlight(new BlockBackendException(BlockBackendException.EIO, $"volume '{_volumeId}' is closed"));
        _disposing.Dispose();
    }

    /// <summary>Opens streams while there is work, replaces broken ones, and gives up on requests when the retries run out.</summary>
    private async Task SuperviseAsync()
    {
        var failures = 0;
        while (true)
        {
            Channel<IoOperation> queue;
            lock (_lock)
            {
                queue = _sendQueue;
            }

            try
            {
                if (!await queue.Reader.WaitToReadAsync(_disposing.Token).ConfigureAwait(false))
                {
                    return; // disposed
                }
            }
            catch (OperationCanceledException)
            {
                return;
            }

            var (failure, answered) = await RunStreamAsync(queue).ConfigureAwait(false);
            if (_disposing.IsCancellationRequested)
            {
                return;
            }

            failures = answered ? 1 : failures + 1;
            if (IsBrokenStream(failure) && failures < _retry.MaxAttempts)
            {
                try
                {
                    await Task.Delay(_retry.BackoffBefore(failures), _disposing.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return;
                }

                Reissue();
                continue;
            }

            // Out of retries, or the server refused the stream: an answer for every request in flight.
            var error = IsBrokenStream(failure)
                ? new RpcException(new Status(failure.StatusCode, $"{failure.Status.Detail} (gave up after {failures} attempt{(failures == 1 ? "" : "s")})"), failure.Trailers)
                : failure;
            failures = 0;
            FailInFlight(RpcErrorCodec.ToBackendException(error, _volumeId, _connection.Server));
        }
    }

    /// <summary>Runs one stream until it fails; returns the failure and whether any request was answered on it.</summary>
    private async Task<(RpcException Failure, bool Answered)> RunStreamAsync(Channel<IoOperation> queue)
    {
        var answered = false;
        using var call = _connection.CallInvoker.AsyncDuplexStreamingCall(_method, null, new CallOptions(_connection.Headers, cancellationToken: _disposing.Token));
        var writer = WriteAsync(call, queue);
        RpcException failure;
        try
        {
            var responses = call.ResponseStream;
            while (await responses.MoveNext(CancellationToken.None).ConfigureAwait(false))
            {
                answered = true;
                var batch = responses.Current.Answered;
                foreach (var op in batch)
                {
                    if (RpcErrorCodec.IsWriterSuperseded((StatusCode)op.Code, op.Errno))
                    {
                        Volatile.Write(ref _takenOver, op.Message);
                    }

                    op.CompleteFromResponse(_volumeId, _connection.Server);
                }

                batch.Clear();
            }

            failure = new RpcException(new Status(StatusCode.Unavailable, "the server ended the stream"));
        }
        catch (RpcException e)
        {
            failure = _connection.AsHandshakeFailure(e) ?? e;
        }
        catch (Exception e) when (e is IOException or HttpRequestException or OperationCanceledException or ObjectDisposedException)
        {
            failure = new RpcException(new Status(StatusCode.Unavailable, e.Message, e));
        }

        // Stop this stream's writer: no request may go out on it any more; its queue is replaced by Reissue.
        queue.Writer.TryComplete();
        try
        {
            await writer.ConfigureAwait(false);
        }
        catch (Exception)
        {
            // The stream is gone either way; the reader's failure is the one that matters.
        }

        return (failure, answered);
    }

    /// <summary>Writes the opening message, then every queued request, flushing only when the queue is empty.</summary>
    private async Task WriteAsync(AsyncDuplexStreamingCall<IoRequestBatch, IoResponseBatch> call, Channel<IoOperation> queue)
    {
        var requests = call.RequestStream;
        var reader = queue.Reader;
        try
        {
            var batch = _outgoing;
            batch.Clear();
            batch.Add(_open);
            await requests.WriteAsync(batch).ConfigureAwait(false);
            while (await reader.WaitToReadAsync().ConfigureAwait(false))
            {
                // Everything queued goes out in one message, up to the entry and payload limits.
                batch.Clear();
                while (batch.Count < IoStreamFields.MaxBatchEntries && reader.TryPeek(out var next)
                    && (batch.Count == 0 || batch.DataBytes + next.WriteData.Length <= IoStreamFields.MaxBatchDataBytes)
                    && reader.TryRead(out next))
                {
                    batch.Add(next);
                }

                if (batch.Count > 0)
                {
                    await requests.WriteAsync(batch).ConfigureAwait(false);
                }
            }

            batch.Clear();
        }
        catch (Exception)
        {
            // A write that fails means the stream is broken: end the call so the reader notices at once.
            call.Dispose();
            throw;
        }
    }

    /// <summary>Takes the request a response answers out of the in-flight table (called by the response codec).</summary>
    private IoOperation? TakeInFlight(ulong id)
    {
        lock (_lock)
        {
            return _inFlight.Remove(id, out var op) ? op : null;
        }
    }

    /// <summary>Queues every unanswered request again, for a new stream; mutations carry their retry number.</summary>
    private void Reissue()
    {
        lock (_lock)
        {
            if (_disposed)
            {
                return;
            }

            // The old queue may still hold requests the broken stream never sent, and some may still be
            // staged: they are in flight too, so all of them go out once, from the new queue.
            _sendQueue = NewQueue();
            _staged.Clear();
            _reconnects.Reconnected();
            _reconnects.Resending(_inFlight.Count);
            foreach (var op in _inFlight.Values)
            {
                if (op.IsMutation)
                {
                    op.Attempt++;
                }

                _sendQueue.Writer.TryWrite(op);
            }
        }
    }

    private void FailInFlight(Exception error)
    {
        IoOperation[] failed;
        lock (_lock)
        {
            failed = [.. _inFlight.Values];
            _inFlight.Clear();
            _staged.Clear();
            if (!_disposed)
            {
                _sendQueue = NewQueue();
            }
        }

        foreach (var op in failed)
        {
            op.Fail(error);
        }
    }

    /// <summary>
    /// True when the stream itself broke (transport, server stopping) rather than the server refusing it:
    /// UNAVAILABLE, or INTERNAL caused by the HTTP/2 connection.
    /// </summary>
    private static bool IsBrokenStream(RpcException e) =>
        RpcRetryPolicy.IsRetryable(e)
        || (e.StatusCode == StatusCode.Internal && e.Status.DebugException is IOException or HttpRequestException or HttpIOException);

    private static Channel<IoOperation> NewQueue() =>
        Channel.CreateUnbounded<IoOperation>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = false });
}
