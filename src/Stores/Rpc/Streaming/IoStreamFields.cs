namespace UblkCsi.Stores.Rpc.Streaming;

/// <summary>Field numbers of IoRequest and IoResponse (proto/blockstore/blockstore.proto), for the hand-written codecs.</summary>
public static class IoStreamFields
{
    /// <summary>IoRequestBatch.requests and IoResponseBatch.responses.</summary>
    public const int BatchEntries = 1;

    /// <summary>Most requests or responses in one batch (their data is bounded by the payload limit too).</summary>
    public const int MaxBatchEntries = 64;

    /// <summary>
    /// Payload bytes a batch collects before it goes out (one larger request or response still goes alone).
    /// Kept at half the payload limit so that two large pieces never make a message over 1 MiB: the
    /// transports pool their message buffers only up to about that size and allocate beyond it.
    /// </summary>
    public const int MaxBatchDataBytes = 512 * 1024;

    public const int RequestId = 1;
    public const int RequestOp = 2;
    public const int RequestOffset = 3;
    public const int RequestLength = 4;
    public const int RequestData = 5;
    public const int RequestFua = 6;
    public const int RequestAttempt = 7;
    public const int RequestVolumeId = 8;
    public const int RequestWriterGeneration = 9;

    public const int ResponseId = 1;
    public const int ResponseCode = 2;
    public const int ResponseData = 3;
    public const int ResponseMessage = 4;
    public const int ResponseErrno = 5;

    /// <summary>The method's name in the BlockStore service.</summary>
    public const string MethodName = "Stream";
}
