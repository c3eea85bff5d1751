using System.Threading.Channels;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using UblkCsi.BlockStore.V1;
using UblkCsi.Engine;
using UblkCsi.Stores;
using UblkCsi.Stores.Files;
using UblkCsi.Stores.Rpc;
using UblkCsi.Stores.Rpc.Streaming;

namespace UblkCsi.BlockStoreServer.Service.Streaming;

/// <summary>
/// One Stream call: the first request opens the volume; every later one runs concurrently as soon as it
/// is read, and its response is queued for the one writer loop, which writes every response ready at
/// that moment as one batch message. Mutations pass the volume's fence exactly like the
/// unary calls (<see cref="MutationAdmission"/>), with the writer generation the OPEN carried. The call ends when the client stops sending (after every response went out), when the
/// client goes away, or when the server stops: then the requests already read finish and are answered,
/// and the call ends UNAVAILABLE so the client sends what was not answered to the next server.
/// </summary>
internal sealed partial class IoStreamSession
{
    private readonly OpenVolume _volume;
    private readonly ulong _writerGeneration;
    private readonly ServerCallContext _context;
    private readonly TimeSpan _retryDrainTimeout;
    private readonly ILogger _logger;
    private readonly Channel<StreamIo> _responses = Channel.CreateUnbounded<StreamIo>(new UnboundedChannelOptions { SingleReader = true });

    // Requests running plus one for the reader; whoever brings it to zero ends the response queue.
    private int _running = 1;

    public IoStreamSession(OpenVolume volume, ulong writerGeneration, ServerCallContext context, TimeSpan retryDrainTimeout, ILogger logger)
    {
        _volume = volume;
        _writerGeneration = writerGeneration;
        _context = context;
        _retryDrainTimeout = retryDrainTimeout;
        _logger = logger;
    }

    /// <summary>Serves the requests after the opening one until the call ends.</summary>
    public async Task RunAsync(IAsyncStreamReader<StreamIoBatch> requests, IServerStreamWriter<StreamIoBatch> responses, CancellationToken serverStopping)
    {
        var writer = WriteResponsesAsync(responses);
        using var readUntil = CancellationTokenSource.CreateLinkedTokenSource(_context.CancellationToken, serverStopping);
        var stopping = false;
        var ready = new List<StreamIo>(IoStreamFields.MaxBatchEntries);
        try
        {
            while (!_volume.IsDeleted && await requests.MoveNext(readUntil.Token).ConfigureAwait(false))
            {
                var batch = requests.Current;
                foreach (var io in batch.Items)
                {
                    Interlocked.Increment(ref _running);
                    var execution = ExecuteAsync(io);
                    if (execution.IsCompleted)
                    {
                        // Answered already (page-cache I/O): queued with the rest of the message's
                        // answers below, so the writer loop wakes once per message, not once per request.
                        ready.Add(io);
                    }
                    else
                    {
                        _ = AnswerWhenDoneAsync(execution, io);
                    }
                }

                batch.Return();
                Answer(ready);
                ready.Clear();
            }
        }
        catch (OperationCanceledException) when (serverStopping.IsCancellationRequested && !_context.CancellationToken.IsCancellationRequested)
        {
            stopping = true;
        }
        finally
        {
            Finished();
            await writer.ConfigureAwait(false);
        }

        if (_volume.IsDeleted)
        {
            // Like a unary call after the delete: the client's requests fail; a new stream finds out whether it is back.
            throw RpcErrorCodec.FromStoreException(new StoreNotFoundException(StoreObjectKind.Volume, _volume.VolumeId));
        }

        if (stopping)
        {
            throw new RpcException(new Status(StatusCode.Unavailable, "the block-store server is stopping; send unanswered requests again"));
        }
    }

    private async Task AnswerWhenDoneAsync(Task execution, StreamIo io)
    {
        await execution.ConfigureAwait(false);
        _responses.Writer.TryWrite(io);
        Finished();
    }

    private void Answer(List<StreamIo> answered)
    {
        foreach (var io in answered)
        {
            _responses.Writer.TryWrite(io);
            Finished();
        }
    }

    /// <summary>Runs one request and turns it into its response (it never throws); queuing the response is the caller's.</summary>
    private async Task ExecuteAsync(StreamIo io)
    {
        try
        {
            var backend = _volume.Backend;
            if (_volume.IsDeleted)
            {
                io.SetError(StatusCode.NotFound, new StoreNotFoundException(StoreObjectKind.Volume, _volume.VolumeId).Message, BlockBackendException.EIO);
            }
            else switch (io.Op)
            {
                case IoOp.Read:
                    if (io.Length is < 0 or > BlockStoreProtocol.MaxPayloadBytes)
                    {
                        io.SetError(StatusCode.InvalidArgument, $"a read must be 0 to {BlockStoreProtocol.MaxPayloadBytes} bytes per request, got {io.Length}; split larger reads", BlockBackendException.EINVAL);
                        break;
                    }

                    if (ReadsInline(backend, io))
                    {
                        io.ReadInResponse(backend);
                        break;
                    }

                    await backend.ReadAsync(io.Offset, io.RentData((int)io.Length), CancellationToken.None).ConfigureAwait(false);
                    break;
                case IoOp.Write:
                    await MutateAsync(io, static (b, r) => b.WriteAsync(r.Offset, r.Data, r.Fua ? BlockWriteFlags.Fua : BlockWriteFlags.None, CancellationToken.None)).ConfigureAwait(false);
                    break;
                case IoOp.Flush:
                    MutationAdmission.CheckWriter(_volume, _writerGeneration);
                    await backend.FlushAsync(CancellationToken.None).ConfigureAwait(false);
                    break;
                case IoOp.Discard:
                    await MutateAsync(io, static (b, r) => b.DiscardAsync(r.Offset, r.Length, CancellationToken.None)).ConfigureAwait(false);
                    break;
                case IoOp.WriteZeroes:
                    await MutateAsync(io, static (b, r) => b.WriteZeroesAsync(r.Offset, r.Length, CancellationToken.None)).ConfigureAwait(false);
                    break;
                default:
                    io.SetError(StatusCode.InvalidArgument, $"op {io.Op} is not a data-path operation (OPEN only starts a stream)", BlockBackendException.EINVAL);
                    break;
            }
        }
        catch (BlockBackendException e)
        {
            io.SetError(RpcErrorCodec.StatusFor(e), e.Message, e.Errno);
        }
        catch (RpcException e)
        {
            io.SetError(e.StatusCode, e.Status.Detail, e.StatusCode == StatusCode.FailedPrecondition ? BlockBackendException.EIO : 0);
        }
        catch (OperationCanceledException)
        {
            io.SetError(StatusCode.Cancelled, "the stream ended before the request started");
        }
        catch (Exception e)
        {
            UnexpectedFailure(_logger, _volume.VolumeId, io.Op, e);
            io.SetError(StatusCode.Internal, "internal error; the server log has the details", BlockBackendException.EIO);
        }

        if (io.Op != IoOp.Read)
        {
            io.DropData();
        }
    }

    /// <summary>
    /// True when <paramref name="io"/> can be read while its response is written (<see cref="StreamIo.ReadInResponse"/>):
    /// the volume reads through the page cache, so a read completes inline in microseconds, and the range
    /// is valid and not empty (an invalid one is refused now, with the volume's own message).
    /// </summary>
    private static bool ReadsInline(IBlockBackend backend, StreamIo io) =>
        backend is FileVolume { DirectIo: false } volume
        && io.Length > 0 && ((io.Offset | io.Length) & (StoreLimits.IoAlignment - 1)) == 0
        && io.Offset >= 0 && io.Offset <= volume.SizeBytes - io.Length;

    /// <summary>A mutation inside the volume's fence: a superseded writer is refused, a retry first waits for every mutation already running.</summary>
    private async ValueTask MutateAsync(StreamIo io, Func<IBlockBackend, StreamIo, ValueTask> mutation)
    {
        // A client that is gone will send this again or report it failed: it must not land later.
        var epoch = await MutationAdmission.EnterAsync(_volume, _writerGeneration, io.Attempt, _retryDrainTimeout, _logger, _context.CancellationToken).ConfigureAwait(false);
        try
        {
            await mutation(_volume.Backend, io).ConfigureAwait(false);
        }
        finally
        {
            _volume.Fence.Exit(epoch);
        }
    }

    private void Finished()
    {
        if (Interlocked.Decrement(ref _running) == 0)
        {
            _responses.Writer.TryComplete();
        }
    }

    /// <summary>
    /// Writes responses as they complete, everything ready at that moment in one message (up to the
    /// entry and payload limits); after a failed write, only returns them to the pool.
    /// </summary>
    private async Task WriteResponsesAsync(IServerStreamWriter<StreamIoBatch> responses)
    {
        var queue = _responses.Reader;
        var broken = false;
        var batch = StreamIoBatch.Rent();
        while (await queue.WaitToReadAsync().ConfigureAwait(false))
        {
            while (batch.Items.Count < IoStreamFields.MaxBatchEntries && queue.TryPeek(out var next)
                && (batch.Items.Count == 0 || batch.DataBytes + next.ResponseDataLength <= IoStreamFields.MaxBatchDataBytes)
                && queue.TryRead(out next))
            {
                batch.AddResponse(next);
            }

            if (!broken && batch.Items.Count > 0)
            {
                try
                {
                    await responses.WriteAsync(batch).ConfigureAwait(false);
                }
                catch (Exception e) when (e is IOException or InvalidOperationException or OperationCanceledException)
                {
                    broken = true;
                }
            }

            foreach (var io in batch.Items)
            {
                io.Return();
            }

            batch.Items.Clear();
            batch.Return();
            batch = StreamIoBatch.Rent();
        }

        batch.Return();
    }

    [LoggerMessage(EventId = 410, Level = LogLevel.Error, Message = "volume {VolumeId}: stream request {Op} failed unexpectedly")]
    private static partial void UnexpectedFailure(ILogger logger, string volumeId, IoOp op, Exception exception);
}
