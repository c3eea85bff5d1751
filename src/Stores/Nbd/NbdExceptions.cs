namespace UblkCsi.Stores.Nbd;

/// <summary>
/// The server broke the protocol (bad magic, unknown handle, a length beyond what was asked or what
/// the client accepts, a truncated stream). The connection is dropped: after such a message nothing
/// that follows on the stream can be trusted.
/// </summary>
public sealed class NbdProtocolException(string message, Exception? inner = null) : IOException(message, inner);

/// <summary>
/// The server refused the negotiation (unknown export, TLS required, policy). Retrying does not help
/// until someone changes the server or the parameters, so the store maps it to a clear store error.
/// </summary>
public sealed class NbdRefusedException(StoreErrorCode code, string message) : StoreException(code, message);
