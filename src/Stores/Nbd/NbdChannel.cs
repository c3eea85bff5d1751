using System.Diagnostics;
using Microsoft.Extensions.Logging;
using UblkCsi.Engine;

namespace UblkCsi.Stores.Nbd;

/// <summary>
/// One of a client's parallel connections, kept alive: when the connection is lost, the requests it
/// carried wait here while a new connection is negotiated (backoff per <see cref="NbdReconnectPolicy"/>)
/// and are then sent again on it. Past the policy's bound the waiting requests fail with EIO, and new
/// ones fail at once, while reconnecting goes on in the background: a server that comes back later
/// is used again without anyone reattaching the volume.
/// </summary>
internal sealed class NbdChannel : INbdConnectionOwner
{
    private readonly NbdClient _client;
    private readonly Lock _lock = new();
    private readonly Queue<NbdRequest> _waiting = new();
    private NbdConnection? _current;
    private bool _reconnecting;
    private bool _disposed;
    private long _downSinceTicks;
    private bool _lost; // the channel's connection was lost and not yet replaced
    private Task _reconnectTask = Task.CompletedTask;

    public NbdChannel(NbdClient client, int index)
    {
        _client = client;
        Index = index;
    }

    /// <summary>Takes the connection the client negotiated before this channel existed.</summary>
    public void Adopt(NbdConnection connection)
    {
        lock (_lock)
        {
            _current = connection;
        }
    }

    public int Index { get; }

    /// <summary>The live connection, if any (tests).</summary>
    public NbdConnection? Current
    {
        get
        {
            lock (_lock)
            {
                return _current;
            }
        }
    }

    public void Submit(NbdRequest request)
    {
        while (true)
        {
            NbdConnection? connection;
            lock (_lock)
            {
                if (_disposed || (_current is null && _client.GaveUp))
                {
                    // Outside the lock: failing completes the caller's wait, which may run its continuation inline.
                    connection = null;
                }
                else if (_current is null)
                {
                    _waiting.Enqueue(request);
                    StartReconnecting();
                    return;
                }
                else
                {
                    connection = _current;
                }
            }

            if (connection is null)
            {
                request.Fail(Unavailable());
                return;
            }

            if (connection.TrySubmit(request))
            {
                return;
            }

            // Lost just now: its owner callback clears _current; go round and wait for the next one.
            lock (_lock)
            {
                if (_current == connection)
                {
                    _current = null;
                }
            }
        }
    }

    public void OnConnectionLost(NbdConnection connection, Exception reason, List<NbdRequest> unanswered)
    {
        List<NbdRequest>? exhausted = null;
        List<NbdRequest>? resendNow = null;
        var late = false;
        lock (_lock)
        {
            if (_current == connection)
            {
                _current = null;
            }

            // A late report (a request the receive loop held when its connection failed) after the
            // channel is connected again: its requests go to the new connection, with no outage
            // reported and no second reconnect, which would replace a working connection.
            late = _current is not null;
            if (_disposed)
            {
                exhausted = unanswered;
            }
            else
            {
                if (!late)
                {
                    _lost = true; // also when a failed submit cleared _current before this report
                    _downSinceTicks = _downSinceTicks == 0 ? Stopwatch.GetTimestamp() : _downSinceTicks;
                    _client.ReportOutage(reason.Message);
                }

                foreach (var request in unanswered)
                {
                    if (request.Attempts >= _client.Options.Reconnect.MaxAttemptsPerRequest)
                    {
                        (exhausted ??= []).Add(request);
                    }
                    else if (late)
                    {
                        (resendNow ??= []).Add(request);
                    }
                    else
                    {
                        _waiting.Enqueue(request);
                    }
                }

                _client.Reconnects.Resending(unanswered.Count - (exhausted?.Count ?? 0));
                if (!late)
                {
                    StartReconnecting();
                }
            }
        }

        if (!_disposed && !late)
        {
            NbdLog.ConnectionLost(_client.Logger, _client.Options.Server, Index, unanswered.Count, reason.Message);
        }

        foreach (var request in resendNow ?? [])
        {
            Submit(request);
        }

        foreach (var request in exhausted ?? [])
        {
            if (!_disposed)
            {
                NbdLog.RequestGaveUp(_client.Logger, _client.Options.Server, request.Command, request.Length, request.Offset, request.Attempts, reason.Message);
            }

            request.Fail(new BlockBackendException(BlockBackendException.EIO,
                _disposed ? $"{_client.Options.Server}: the volume was closed with the request in flight"
                          : $"{_client.Options.Server}: {request.Command} at {request.Offset} failed on {request.Attempts} connections; last: {reason.Message}", reason));
        }
    }

    public async ValueTask DisposeAsync()
    {
        NbdConnection? connection;
        Task reconnect;
        lock (_lock)
        {
            _disposed = true;
            connection = _current;
            _current = null;
            reconnect = _reconnectTask;
        }

        if (connection is not null)
        {
            await connection.DisposeAsync().ConfigureAwait(false);
        }

        await reconnect.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        FailWaiting(new BlockBackendException(BlockBackendException.EIO, $"{_client.Options.Server}: the volume was closed"));
    }

    /// <summary>Caller holds the lock.</summary>
    private void StartReconnecting()
    {
        if (_reconnecting || _disposed)
        {
            return;
        }

        _reconnecting = true;
        if (_downSinceTicks == 0)
        {
            _downSinceTicks = Stopwatch.GetTimestamp();
        }

        _reconnectTask = Task.Run(ReconnectLoopAsync);
    }

    private async Task ReconnectLoopAsync()
    {
        var policy = _client.Options.Reconnect;
        var attempt = 0;
        while (true)
        {
            if (_client.Stopping.IsCancellationRequested)
            {
                return;
            }

            attempt++;
            NbdConnection connection;
            try
            {
                connection = await _client.OpenConnectionAsync(this, _client.Stopping).ConfigureAwait(false);
            }
            catch (Exception e) when (!_client.Stopping.IsCancellationRequested)
            {
                NbdLog.ReconnectFailed(_client.Logger, _client.Options.Server, Index, attempt, e.Message);
                GiveUpIfOverdue(e.Message);
                try
                {
                    await Task.Delay(policy.BackoffBefore(attempt), _client.Stopping).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return;
                }

                continue;
            }
            catch (OperationCanceledException)
            {
                return;
            }

            NbdRequest[] resend;
            long downMs;
            var replacesLost = false;
            lock (_lock)
            {
                if (_disposed)
                {
                    resend = [];
                    downMs = 0;
                }
                else
                {
                    _current = connection;
                    _reconnecting = false;
                    replacesLost = _lost;
                    if (_lost)
                    {
                        _lost = false;
                        _client.Reconnects.Reconnected(); // not the channel's first connection
                    }

                    downMs = _downSinceTicks == 0 ? 0 : (long)Stopwatch.GetElapsedTime(_downSinceTicks).TotalMilliseconds;
                    _downSinceTicks = 0;
                    resend = _waiting.ToArray();
                    _waiting.Clear();
                }
            }

            if (_disposed)
            {
                await connection.DisposeAsync().ConfigureAwait(false);
                return;
            }

            _client.ReportConnected();
            if (replacesLost || attempt > 1)
            {
                NbdLog.Reconnected(_client.Logger, _client.Options.Server, Index, downMs, attempt, resend.Length);
            }
            else
            {
                // The channel's first connection, opened when a thread first used it: nothing was lost.
                NbdLog.Connected(_client.Logger, _client.Options.Server, Index, connection.Export);
            }

            foreach (var request in resend)
            {
                Submit(request);
            }

            return;
        }
    }

    private void GiveUpIfOverdue(string reason)
    {
        var down = _client.ReportOutage(reason);
        if (down < _client.Options.Reconnect.GiveUpAfter)
        {
            return;
        }

        var first = _client.ReportGaveUp();
        NbdRequest[] failed;
        lock (_lock)
        {
            failed = _waiting.ToArray();
            _waiting.Clear();
        }

        if (first || failed.Length > 0)
        {
            NbdLog.GaveUp(_client.Logger, _client.Options.Server, Index, Math.Round(down.TotalSeconds, 1), failed.Length, reason);
        }

        foreach (var request in failed)
        {
            request.Fail(Unavailable());
        }
    }

    private void FailWaiting(Exception error)
    {
        NbdRequest[] failed;
        lock (_lock)
        {
            failed = _waiting.ToArray();
            _waiting.Clear();
        }

        foreach (var request in failed)
        {
            request.Fail(error);
        }
    }

    private BlockBackendException Unavailable() =>
        new(BlockBackendException.EIO, _disposed ? $"{_client.Options.Server}: the volume was closed" : $"{_client.Options.Server} {_client.OutageText()}");
}
