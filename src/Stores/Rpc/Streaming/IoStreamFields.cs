namespace UblkCsi.Stores.Rpc.Streaming;

/// <summary>Field numbers of IoRequest and IoResponse (proto/blockstore/blockstore.proto), for the hand-written codecs.</summary>
public static class IoStreamFields
{
    public const int RequestId = 1;
    public const int RequestOp = 2;
    public const int RequestOffset = 3;
    public const int RequestLength = 4;
    public const int RequestData = 5;
    public const int RequestFua = 6;
    public const int RequestAttempt = 7;
    public const int RequestVolumeId = 8;

    public const int ResponseId = 1;
    public const int ResponseCode = 2;
    public const int ResponseData = 3;
    public const int ResponseMessage = 4;
    public const int ResponseErrno = 5;

    /// <summary>The method's name in the BlockStore service.</summary>
    public const string MethodName = "Stream";
}
