using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using UblkCsi.Engine;
using Microsoft.Extensions.Logging.Abstractions;
using UblkCsi.Stores.Metrics;

namespace UblkCsi.Stores.Nbd;

/// <summary>
/// A client of one NBD export over up to N parallel connections (N &gt; 1 only when the export
/// advertises NBD_FLAG_CAN_MULTI_CONN, which makes a FLUSH on one connection cover writes answered on
/// any). Each calling thread — in the node plugin, each engine queue thread — keeps to one
/// connection, so by default there is one connection per queue. Requests are pooled objects awaited
/// as <see cref="ValueTask"/>s; I/O larger than the server's maximum payload is split.
/// </summary>
public sealed class NbdClient : IAsyncDisposable
{
    /// <summary>Smallest READ served into registered pages (<see cref="TryReadRegistered"/>).</summary>
    public const int ZeroCopyReadMinBytes = 64 * 1024;

    [ThreadStatic]
    private static NbdClient? t_client;

    [ThreadStatic]
    private static int t_channel;

    private readonly NbdChannel?[] _channels;
    private readonly Lock _channelsLock = new();
    // A stack under a lock, not a ConcurrentQueue: that allocates a new segment every so many items.
    private readonly Stack<NbdRequest> _pool = new(256);
    private readonly Lock _poolLock = new();
    private readonly CancellationTokenSource _stopping = new();
    private readonly Lock _outageLock = new();
    private int _nextChannel = -1;
    private long _outageSinceTicks;
    private bool _gaveUp;
    private string? _outageReason;
    private int _disposed;

    private NbdClient(NbdClientOptions options, NbdExport export, int connections, ILogger logger)
    {
        Options = options;
        Export = export;
        Logger = logger;
        Reconnects = options.Counters ?? new("nbd", "nbd_reissued_requests_total", "Unanswered requests of a lost NBD connection sent again on its replacement.");
        _channels = new NbdChannel?[connections];
    }

    public NbdClientOptions Options { get; }

    /// <summary>Connections re-established after a loss and the unanswered requests reissued on them.</summary>
    internal ReconnectCounters Reconnects { get; }

    /// <summary>The export as negotiated on the first connection; later connections must match it.</summary>
    public NbdExport Export { get; }

    /// <summary>Connections this client may open.</summary>
    public int MaxConnections => _channels.Length;

    internal ILogger Logger { get; }

    /// <summary>Send batches of the live connections, by the thread that wrote them (tests).</summary>
    internal (long OnQueueThreads, long OnSenderThread) SentBatches()
    {
        long onQueueThreads = 0, onSenderThread = 0;
        foreach (var channel in _channels)
        {
            if (channel?.Current is { } connection)
            {
                onQueueThreads += connection.SentBatches.OnQueueThreads;
                onSenderThread += connection.SentBatches.OnSenderThread;
            }
        }

        return (onQueueThreads, onSenderThread);
    }

    /// <summary>WRITE payload bytes the live connections sent without copying them (<see cref="NbdPayloadPipe"/>; tests).</summary>
    internal long PipedBytes() => _channels.Sum(channel => channel?.Current?.PipedBytes ?? 0);

    /// <summary>READ payloads the live connections received straight into registered request pages (tests).</summary>
    internal long ZeroCopyReceives() => _channels.Sum(channel => channel?.Current?.ZeroCopyReceives ?? 0);

    /// <summary>Socket reads the live connections did on an engine queue thread's ring (<see cref="NbdSocketReceiver"/>; tests).</summary>
    internal long ReadsOnQueueThread() => _channels.Sum(channel => channel?.Current?.ReadsOnQueueThread ?? 0);

    /// <summary>The socket descriptors of the live connections (tests).</summary>
    internal int[] LiveSocketDescriptors() =>
        [.. _channels.Select(channel => channel?.Current).OfType<NbdConnection>().Where(connection => !connection.IsFailed).Select(connection => connection.SocketDescriptor)];

    /// <summary>Connections that are up and not failed (tests).</summary>
    internal int LiveConnections() => _channels.Count(channel => channel?.Current is { IsFailed: false });

    internal CancellationToken Stopping => _stopping.Token;

    /// <summary>Why the data path is failing, or that it is healthy (for the CSI VolumeCondition).</summary>
    public VolumeCondition Condition
    {
        get
        {
            lock (_outageLock)
            {
                if (_outageSinceTicks != 0)
                {
                    var state = _gaveUp ? "I/O fails with EIO while reconnecting" : "I/O waits while reconnecting";
                    return new VolumeCondition(true,
                        $"{Options.Server} export '{Export.Name}' unreachable for {Stopwatch.GetElapsedTime(_outageSinceTicks).TotalSeconds:0.#} s ({state}): {_outageReason}");
                }
            }

            return new VolumeCondition(false, $"{Options.Server} export '{Export.Name}' reachable");
        }
    }

    /// <summary>
    /// True once the server has been unreachable for longer than the reconnect bound: every
    /// connection then fails new I/O at once (one connection's outage is the server's, so a
    /// connection opened later does not wait out the bound again).
    /// </summary>
    internal bool GaveUp
    {
        get
        {
            lock (_outageLock)
            {
                return _gaveUp;
            }
        }
    }

    /// <summary>A connection was lost or could not be opened; returns the time since the outage began.</summary>
    internal TimeSpan ReportOutage(string reason)
    {
        lock (_outageLock)
        {
            if (_outageSinceTicks == 0)
            {
                _outageSinceTicks = Stopwatch.GetTimestamp();
            }

            _outageReason = reason;
            return Stopwatch.GetElapsedTime(_outageSinceTicks);
        }
    }

    /// <summary>Marks the outage as past the bound; false when another connection already did.</summary>
    internal bool ReportGaveUp()
    {
        lock (_outageLock)
        {
            var first = !_gaveUp && _outageSinceTicks != 0;
            _gaveUp |= _outageSinceTicks != 0;
            return first;
        }
    }

    /// <summary>A connection is (back) up: the server is reachable.</summary>
    internal void ReportConnected()
    {
        lock (_outageLock)
        {
            _outageSinceTicks = 0;
            _gaveUp = false;
            _outageReason = null;
        }
    }

    /// <summary>The outage's reason and duration for error messages.</summary>
    internal string OutageText()
    {
        lock (_outageLock)
        {
            return _outageSinceTicks == 0 ? "connecting" :
                $"unreachable for {Stopwatch.GetElapsedTime(_outageSinceTicks).TotalSeconds:0.#} s (bound {Options.Reconnect.GiveUpAfter.TotalSeconds:0.#} s; still reconnecting): {_outageReason}";
        }
    }

    /// <summary>Connects, negotiates the export and checks it can serve the requested access.</summary>
    /// <exception cref="StoreException">Unreachable (Unavailable), no such export (NotFound), refused, or a read-write open of a read-only export.</exception>
    public static async Task<NbdClient> ConnectAsync(NbdClientOptions options, ILogger? logger = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        logger ??= NullLogger.Instance;
        var (socket, stream, export) = await NegotiateAsync(options, 0, cancellationToken).ConfigureAwait(false);
        if (export.IsReadOnly && !options.ReadOnly)
        {
            stream.Dispose();
            socket.Dispose();
            throw new StoreException(StoreErrorCode.FailedPrecondition,
                $"{options.Server} export '{options.DisplayExport}' is read-only; open it read-only (a read-only PersistentVolume or --read-only)");
        }

        var requested = options.Connections ?? NbdClientOptions.DefaultMaxConnections;
        if (!export.CanMultiConn && requested > 1 && options.Connections is not null)
        {
            NbdLog.SingleConnection(logger, options.Server, export.Name, requested);
        }

        var client = new NbdClient(options, export, export.CanMultiConn ? requested : 1, logger);
        var channel = new NbdChannel(client, 0);
        var connection = new NbdConnection(socket, stream, export, options.Server, channel, options.RequestTimeout);
        channel.Adopt(connection);
        client._channels[0] = channel;
        connection.Start(client.WatchdogPeriod);
        NbdLog.Connected(logger, options.Server, 0, export);
        return client;
    }

    public ValueTask ReadAsync(long offset, Memory<byte> buffer) =>
        buffer.Length <= Export.MaximumPayload
            ? Submit(NbdCommand.Read, NbdCommandFlags.None, offset, (uint)buffer.Length, buffer, default)
            : SplitReadAsync(offset, buffer);

    /// <summary>
    /// Zero copy (UBLK_F_AUTO_BUF_REG, Linux 6.16+) is offered on plain connections: TLS must decrypt
    /// through user memory.
    /// </summary>
    public bool ServesRegisteredBuffers => Options.Tls is null;

    /// <summary>
    /// Starts a READ whose payload the receive loop puts straight into the request's registered
    /// pages (a receive into them on the queue's ring: the socket's copy is the only one). False for
    /// reads below <see cref="ZeroCopyReadMinBytes"/> (small replies are cheaper read many at a time
    /// through the receive buffer, then copied), above the server's maximum payload, or over TLS.
    /// </summary>
    public bool TryReadRegistered(long offset, RegisteredBuffer buffer, out ValueTask pending)
    {
        if (!ServesRegisteredBuffers || buffer.Length < ZeroCopyReadMinBytes || buffer.Length > Export.MaximumPayload)
        {
            pending = default;
            return false;
        }

        pending = Submit(NbdCommand.Read, NbdCommandFlags.None, offset, (uint)buffer.Length, default, default, buffer);
        return true;
    }

    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, bool fua)
    {
        var flags = fua ? NbdCommandFlags.Fua : NbdCommandFlags.None;
        return data.Length <= Export.MaximumPayload
            ? Submit(NbdCommand.Write, flags, offset, (uint)data.Length, default, data)
            : SplitWriteAsync(offset, data, flags);
    }

    public ValueTask FlushAsync() => Submit(NbdCommand.Flush, NbdCommandFlags.None, 0, 0, default, default);

    public ValueTask TrimAsync(long offset, long length) => RangeAsync(NbdCommand.Trim, NbdCommandFlags.None, offset, length);

    /// <summary>WRITE_ZEROES; <paramref name="noHole"/> asks the server to keep the range allocated.</summary>
    public ValueTask WriteZeroesAsync(long offset, long length, bool noHole) =>
        RangeAsync(NbdCommand.WriteZeroes, noHole ? NbdCommandFlags.NoHole : NbdCommandFlags.None, offset, length);

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        await _stopping.CancelAsync().ConfigureAwait(false);
        foreach (var channel in _channels)
        {
            if (channel is not null)
            {
                await channel.DisposeAsync().ConfigureAwait(false);
            }
        }

        _stopping.Dispose();
    }

    internal void Return(NbdRequest request)
    {
        lock (_poolLock)
        {
            _pool.Push(request);
        }
    }

    /// <summary>Opens one more connection for <paramref name="channel"/> and checks it serves the same export.</summary>
    internal async Task<NbdConnection> OpenConnectionAsync(NbdChannel channel, CancellationToken cancellationToken)
    {
        var (socket, stream, export) = await NegotiateAsync(Options, channel.Index, cancellationToken).ConfigureAwait(false);
        var changed = export.SizeBytes != Export.SizeBytes ? $"size {Export.SizeBytes} became {export.SizeBytes}"
            : export.IsReadOnly && !Options.ReadOnly ? "it became read-only"
            // With several connections a FLUSH on one must cover writes acknowledged on the others.
            : _channels.Length > 1 && !export.CanMultiConn ? "it no longer allows several connections (NBD_FLAG_CAN_MULTI_CONN), which this attachment's flushes rely on"
            : export.StructuredReplies != Export.StructuredReplies || export.MaximumPayload < Export.MaximumPayload || export.MinimumBlockSize > Export.MinimumBlockSize
              || (Export.Flags & ~export.Flags & (NbdTransmissionFlags.SendFlush | NbdTransmissionFlags.SendFua | NbdTransmissionFlags.SendWriteZeroes | NbdTransmissionFlags.SendTrim)) != 0
                ? $"it changed from [{Export}] to [{export}]"
                : null;
        if (changed is not null)
        {
            stream.Dispose();
            socket.Dispose();
            throw new NbdRefusedException(StoreErrorCode.FailedPrecondition, $"{Options.Server} export '{Options.DisplayExport}' is not the one attached: {changed}");
        }

        var connection = new NbdConnection(socket, stream, Export, Options.Server, channel, Options.RequestTimeout);
        connection.Start(WatchdogPeriod);
        return connection;
    }

    private TimeSpan WatchdogPeriod => TimeSpan.FromMilliseconds(Math.Clamp(Options.RequestTimeout.TotalMilliseconds / 4, 50, 1000));

    private static async Task<(Socket Socket, Stream Stream, NbdExport Export)> NegotiateAsync(NbdClientOptions options, int connectionIndex, CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(options.HandshakeTimeout);
        Socket? socket = null;
        Stream? stream = null;
        try
        {
            socket = NbdTransport.Create(options.Endpoint, out var target);
            var exportName = options.ConnectionExport?.Invoke(connectionIndex) ?? options.Export;
            if (options.Tls is null)
            {
                // Blocking calls on a thread of its own (NbdBlockingStream says why); the deadline
                // ends the wait here, and disposing the socket below ends the thread's call.
                var blockingSocket = socket;
                var negotiation = Task.Factory.StartNew(
                    () => NegotiateBlocking(blockingSocket, target, exportName, options),
                    CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
                _ = negotiation.ContinueWith(static t => t.Exception, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted, TaskScheduler.Default);
                var (plain, plainExport) = await negotiation.WaitAsync(timeout.Token).ConfigureAwait(false);
                return (socket, plain, plainExport);
            }

            await socket.ConnectAsync(target, timeout.Token).ConfigureAwait(false);
            stream = new NetworkStream(socket, ownsSocket: false);
            var (transmission, export) = await NbdHandshake.NegotiateAsync(stream, exportName, options.DisplayExport, options.Server, options.Tls, options.TlsHost, timeout.Token).ConfigureAwait(false);
            return (socket, transmission, export);
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            Dispose(stream, socket);
            throw new StoreException(StoreErrorCode.Unavailable,
                $"{options.Server}: no complete NBD negotiation within {options.HandshakeTimeout.TotalSeconds:0.#} s");
        }
        catch (SocketException e)
        {
            Dispose(stream, socket);
            throw new StoreException(StoreErrorCode.Unavailable, $"{options.Server}: cannot connect: {e.Message}", e);
        }
        catch (Exception e) when (e is NbdProtocolException or IOException)
        {
            Dispose(stream, socket);
            throw new StoreException(StoreErrorCode.Unavailable, $"{options.Server}: negotiation failed: {e.Message}", e);
        }
        catch
        {
            Dispose(stream, socket);
            throw;
        }

        static void Dispose(Stream? stream, Socket? socket)
        {
            stream?.Dispose();
            socket?.Dispose();
        }
    }

    /// <summary>
    /// Connects and negotiates a plain connection with blocking calls, each bounded a little past the
    /// handshake deadline (the caller's wait ends at the deadline itself), then makes the socket
    /// non-blocking: from here on every call on it is one (a send or receive that would wait answers
    /// EAGAIN, and the caller polls), and WRITE payloads can be spliced into it (<see cref="NbdPayloadPipe"/>).
    /// </summary>
    private static (NbdBlockingStream Stream, NbdExport Export) NegotiateBlocking(Socket socket, EndPoint target, string exportName, NbdClientOptions options)
    {
        var bound = (int)Math.Min(int.MaxValue, options.HandshakeTimeout.TotalMilliseconds + 1000);
        socket.SendTimeout = bound; // Linux bounds a blocking connect by it too
        socket.ReceiveTimeout = bound;
        socket.Connect(target);
        var stream = new NbdBlockingStream(socket);
        // Completes synchronously: every read and write of a blocking stream does.
        var (_, export) = NbdHandshake.NegotiateAsync(stream, exportName, options.DisplayExport, options.Server, tls: null, options.TlsHost, CancellationToken.None).GetAwaiter().GetResult();
        socket.SendTimeout = 0;
        socket.ReceiveTimeout = 0;
        socket.Blocking = false;
        return (stream, export);
    }

    private ValueTask Submit(NbdCommand command, NbdCommandFlags flags, long offset, uint length, Memory<byte> readBuffer, ReadOnlyMemory<byte> writeData, RegisteredBuffer? registered = null)
    {
        NbdRequest? request;
        lock (_poolLock)
        {
            _pool.TryPop(out request);
        }

        request ??= new NbdRequest(this);

        request.Prepare(command, flags, offset, length, readBuffer, writeData, registered);
        ChannelForThisThread().Submit(request);
        return request.AsValueTask();
    }

    /// <summary>The connection of the calling thread: a thread new to this client gets the next one, round robin.</summary>
    private NbdChannel ChannelForThisThread()
    {
        int index;
        if (t_client == this)
        {
            index = t_channel;
        }
        else
        {
            index = (int)((uint)Interlocked.Increment(ref _nextChannel) % (uint)_channels.Length);
            t_client = this;
            t_channel = index;
        }

        return _channels[index] ?? CreateChannel(index);
    }

    private NbdChannel CreateChannel(int index)
    {
        lock (_channelsLock)
        {
            // Connected lazily: the channel negotiates on its first request.
            return _channels[index] ??= new NbdChannel(this, index);
        }
    }

    private async ValueTask SplitReadAsync(long offset, Memory<byte> buffer)
    {
        var max = Export.MaximumPayload;
        var pieces = new List<ValueTask>();
        for (var start = 0; start < buffer.Length; start += max)
        {
            var length = Math.Min(max, buffer.Length - start);
            pieces.Add(Submit(NbdCommand.Read, NbdCommandFlags.None, offset + start, (uint)length, buffer.Slice(start, length), default));
        }

        await AwaitAllAsync(pieces).ConfigureAwait(false);
    }

    private async ValueTask SplitWriteAsync(long offset, ReadOnlyMemory<byte> data, NbdCommandFlags flags)
    {
        var max = Export.MaximumPayload;
        var pieces = new List<ValueTask>();
        for (var start = 0; start < data.Length; start += max)
        {
            var length = Math.Min(max, data.Length - start);
            pieces.Add(Submit(NbdCommand.Write, flags, offset + start, (uint)length, default, data.Slice(start, length)));
        }

        await AwaitAllAsync(pieces).ConfigureAwait(false);
    }

    /// <summary>TRIM and WRITE_ZEROES carry a 32-bit length: longer ranges go in 1 GiB steps.</summary>
    private ValueTask RangeAsync(NbdCommand command, NbdCommandFlags flags, long offset, long length)
    {
        const long Step = 1L << 30;
        return length <= Step ? Submit(command, flags, offset, (uint)length, default, default) : SplitRangeAsync(command, flags, offset, length, Step);
    }

    private async ValueTask SplitRangeAsync(NbdCommand command, NbdCommandFlags flags, long offset, long length, long step)
    {
        var pieces = new List<ValueTask>();
        for (long start = 0; start < length; start += step)
        {
            pieces.Add(Submit(command, flags, offset + start, (uint)Math.Min(step, length - start), default, default));
        }

        await AwaitAllAsync(pieces).ConfigureAwait(false);
    }

    /// <summary>Awaits every piece (each pooled request must be awaited exactly once) and rethrows the first failure.</summary>
    private static async ValueTask AwaitAllAsync(List<ValueTask> pieces)
    {
        Exception? first = null;
        foreach (var piece in pieces)
        {
            try
            {
                await piece.ConfigureAwait(false);
            }
            catch (Exception e)
            {
                first ??= e;
            }
        }

        if (first is not null)
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(first);
        }
    }
}
