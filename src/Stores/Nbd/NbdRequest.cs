using System.Threading.Tasks.Sources;
using UblkCsi.Engine;

namespace UblkCsi.Stores.Nbd;

/// <summary>
/// One transmission request and the caller's wait for it. Pooled by <see cref="NbdClient"/> and
/// awaited through <see cref="IValueTaskSource"/>, so a request in steady state allocates nothing.
/// A request outlives the connection it was first sent on: when that connection drops, the request is
/// sent again on the next one (every command is idempotent by offset), keeping its buffer.
/// </summary>
internal sealed class NbdRequest : IValueTaskSource
{
    private ManualResetValueTaskSourceCore<bool> _core;
    private Exception? _error;
    private bool _payloadByReference;

    /// <summary>What the current structured READ reply has covered: disjoint ranges by start (kept between uses: no allocation per request).</summary>
    private readonly List<(int Start, int End)> _covered = new(4);

    public NbdRequest(NbdClient owner)
    {
        Owner = owner;
        // The reply is read on the connection's receive loop; the engine's continuation only hands the
        // completion back to its queue thread, so running it inline saves a thread hop per request.
        _core.RunContinuationsAsynchronously = false;
    }

    public NbdClient Owner { get; }

    public NbdCommand Command { get; private set; }

    public NbdCommandFlags Flags { get; private set; }

    public long Offset { get; private set; }

    public uint Length { get; private set; }

    /// <summary>Destination of a READ.</summary>
    public Memory<byte> ReadBuffer { get; private set; }

    /// <summary>Destination of a zero-copy READ: the ublk request's registered pages (then <see cref="ReadBuffer"/> is empty).</summary>
    public RegisteredBuffer? Registered { get; private set; }

    /// <summary>Payload of a WRITE.</summary>
    public ReadOnlyMemory<byte> WriteData { get; private set; }

    /// <summary>
    /// A connection took the WRITE payload by reference (<see cref="NbdPayloadPipe"/>): until that
    /// connection's server answers, the kernel may still read the payload's pages.
    /// </summary>
    public bool PayloadByReference
    {
        get => Volatile.Read(ref _payloadByReference);
        set => Volatile.Write(ref _payloadByReference, value);
    }

    /// <summary>The handle (cookie) of the current send; a new one per connection it is sent on.</summary>
    public ulong Handle { get; set; }

    /// <summary>Stopwatch ticks when it was last handed to a connection (for the no-reply watchdog).</summary>
    public long SentAtTicks { get; set; }

    /// <summary>How many connections it has been handed to.</summary>
    public int Attempts { get; set; }

    /// <summary>Bytes of a structured READ reply received so far (data plus holes).</summary>
    public long BytesCovered { get; private set; }

    /// <summary>Errno of the first error chunk of the current reply, 0 if none.</summary>
    public int ReplyErrno { get; set; }

    /// <summary>Message of the first error chunk, if the server sent one.</summary>
    public string? ReplyMessage { get; set; }

    public short Version => _core.Version;

    public void Prepare(NbdCommand command, NbdCommandFlags flags, long offset, uint length, Memory<byte> readBuffer, ReadOnlyMemory<byte> writeData, RegisteredBuffer? registered)
    {
        Registered = registered;
        Command = command;
        Flags = flags;
        Offset = offset;
        Length = length;
        ReadBuffer = readBuffer;
        WriteData = writeData;
        Attempts = 0;
        PayloadByReference = false;
        _error = null;
        ResetReply();
    }

    /// <summary>
    /// Records that a chunk of a structured READ reply covers [<paramref name="start"/>, +<paramref name="length"/>)
    /// of the request. False when that overlaps a chunk already received: the protocol forbids it,
    /// and counting bytes alone would let a repeated chunk stand in for one never sent.
    /// </summary>
    public bool TryCover(int start, int length)
    {
        if (length == 0)
        {
            return true;
        }

        var end = start + length;
        // The first range starting at or after start; ranges are disjoint, sorted, adjacent ones merged.
        int low = 0, high = _covered.Count;
        while (low < high)
        {
            var middle = (low + high) / 2;
            if (_covered[middle].Start < start)
            {
                low = middle + 1;
            }
            else
            {
                high = middle;
            }
        }

        if ((low > 0 && _covered[low - 1].End > start) || (low < _covered.Count && _covered[low].Start < end))
        {
            return false;
        }

        var joinsPrevious = low > 0 && _covered[low - 1].End == start;
        var joinsNext = low < _covered.Count && _covered[low].Start == end;
        if (joinsPrevious && joinsNext)
        {
            _covered[low - 1] = (_covered[low - 1].Start, _covered[low].End);
            _covered.RemoveAt(low);
        }
        else if (joinsPrevious)
        {
            _covered[low - 1] = (_covered[low - 1].Start, end);
        }
        else if (joinsNext)
        {
            _covered[low] = (start, _covered[low].End);
        }
        else
        {
            _covered.Insert(low, (start, end));
        }

        BytesCovered += length;
        return true;
    }

    /// <summary>Forgets a partial reply before the request is sent again.</summary>
    public void ResetReply()
    {
        BytesCovered = 0;
        _covered.Clear();
        ReplyErrno = 0;
        ReplyMessage = null;
    }

    public void Succeed() => _core.SetResult(true);

    public void Fail(Exception error)
    {
        Volatile.Write(ref _error, error);
        _core.SetResult(false);
    }

    public ValueTask AsValueTask() => new(this, _core.Version);

    public void GetResult(short token)
    {
        _core.GetResult(token);
        var error = _error;
        // Back to the pool before throwing: the buffers belong to the caller again either way.
        ReadBuffer = default;
        WriteData = default;
        Registered = null;
        _error = null;
        _core.Reset();
        Owner.Return(this);
        if (error is not null)
        {
            throw error;
        }
    }

    /// <summary>
    /// Faulted when the reply carried an error: the core completes either way (the error is thrown by
    /// <see cref="GetResult"/>), and a caller that trusts <see cref="ValueTask.IsCompletedSuccessfully"/>
    /// must not take a refused request for a served one.
    /// </summary>
    public ValueTaskSourceStatus GetStatus(short token)
    {
        var status = _core.GetStatus(token);
        return status == ValueTaskSourceStatus.Succeeded && Volatile.Read(ref _error) is not null ? ValueTaskSourceStatus.Faulted : status;
    }

    public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _core.OnCompleted(continuation, state, token, flags);

    /// <summary>The error a finished reply carries (server error chunk or simple-reply error).</summary>
    public BlockBackendException ServerError(string server) =>
        new(NbdErrors.ToLinuxErrno(ReplyErrno, Command),
            $"{server}: {Command} of {Length} bytes at {Offset} failed with {NbdErrors.Name(ReplyErrno)}" + (ReplyMessage is null ? "" : $": {ReplyMessage}"));
}
