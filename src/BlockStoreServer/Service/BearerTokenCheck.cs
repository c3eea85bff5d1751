using System.Buffers;
using System.Security.Cryptography;
using System.Text;
using Grpc.Core;
using UblkCsi.Stores.Rpc;

namespace UblkCsi.BlockStoreServer.Service;

/// <summary>
/// Checks the shared token a client sends as <c>authorization: Bearer TOKEN</c>. Both sides are
/// hashed and compared in constant time, so neither the token's content nor its length leaks
/// through timing. The token is kept only as its hash and never appears in a message or log.
/// </summary>
internal sealed class BearerTokenCheck
{
    private const int StackLimit = 512;
    private readonly byte[]? _expectedHash;

    /// <param name="token">The required token, or null to accept every call.</param>
    public BearerTokenCheck(string? token)
    {
        _expectedHash = token is null ? null : SHA256.HashData(Encoding.UTF8.GetBytes(token));
    }

    public bool Enabled => _expectedHash is not null;

    /// <summary>Throws UNAUTHENTICATED unless the call carries the token.</summary>
    public void Check(ServerCallContext context)
    {
        if (_expectedHash is null)
        {
            return;
        }

        var value = context.RequestHeaders.GetValue(BlockStoreProtocol.AuthorizationMetadata);
        if (value is null || !value.StartsWith(BlockStoreProtocol.BearerPrefix, StringComparison.Ordinal))
        {
            throw new RpcException(new Status(StatusCode.Unauthenticated, "this server requires a token: send metadata 'authorization: Bearer <token>'"));
        }

        if (!Matches(value.AsSpan(BlockStoreProtocol.BearerPrefix.Length)))
        {
            throw new RpcException(new Status(StatusCode.Unauthenticated, "the token does not match the server's token"));
        }
    }

    private bool Matches(ReadOnlySpan<char> presented)
    {
        var byteCount = Encoding.UTF8.GetByteCount(presented);
        byte[]? rented = null;
        var bytes = byteCount <= StackLimit ? stackalloc byte[StackLimit] : (rented = ArrayPool<byte>.Shared.Rent(byteCount));
        try
        {
            var written = Encoding.UTF8.GetBytes(presented, bytes);
            Span<byte> hash = stackalloc byte[SHA256.HashSizeInBytes];
            SHA256.HashData(bytes[..written], hash);
            return CryptographicOperations.FixedTimeEquals(hash, _expectedHash);
        }
        finally
        {
            if (rented is not null)
            {
                CryptographicOperations.ZeroMemory(rented.AsSpan(0, byteCount));
                ArrayPool<byte>.Shared.Return(rented);
            }
        }
    }
}
