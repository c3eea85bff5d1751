using System.Net;
using Amazon.Runtime;
using Amazon.S3;
using Amazon.S3.Model;

namespace UblkCsi.Stores.S3;

/// <summary>
/// The handful of object operations the s3 store uses, over one bucket and key prefix, with S3's
/// failure modes turned into the store's: a missing key is null/false, an unreachable service is
/// <see cref="StoreErrorCode.Unavailable"/>. Keys passed in are relative to the prefix.
/// </summary>
internal sealed class S3Bucket(IAmazonS3 client, string bucket, string prefix) : IDisposable
{
    private const int DeleteBatch = 1000; // S3's DeleteObjects limit

    // A body that fails the SDK's MD5/ETag check is re-read: corruption in transit, or a server
    // without atomic overwrites (s3rver) serving new bytes with the old ETag for a moment.
    private const int ChecksumAttempts = 4;
    private static readonly TimeSpan ChecksumRetryDelay = TimeSpan.FromMilliseconds(20);

    public string Bucket => bucket;

    public string Prefix => prefix;

    /// <summary>The object's bytes, or null when it does not exist.</summary>
    public async Task<byte[]?> GetAsync(string key, CancellationToken cancellationToken)
    {
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                using var response = await client.GetObjectAsync(bucket, prefix + key, cancellationToken).ConfigureAwait(false);
                var data = new byte[response.ContentLength];
                await response.ResponseStream.ReadExactlyAsync(data, cancellationToken).ConfigureAwait(false);
                return data;
            }
            catch (AmazonS3Exception e) when (e.StatusCode == HttpStatusCode.NotFound && e.ErrorCode != "NoSuchBucket")
            {
                return null;
            }
            catch (AmazonClientException e) when (IsChecksumMismatch(e) && attempt < ChecksumAttempts)
            {
                await Task.Delay(ChecksumRetryDelay * attempt, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (Translate(e, "GET", key) is { } error)
            {
                throw error;
            }
        }
    }

    /// <summary>Reads an object into <paramref name="destination"/>; returns the bytes read, or -1 when it does not exist.</summary>
    public async Task<int> GetIntoAsync(string key, Memory<byte> destination, CancellationToken cancellationToken)
    {
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                using var response = await client.GetObjectAsync(bucket, prefix + key, cancellationToken).ConfigureAwait(false);
                var length = (int)Math.Min(response.ContentLength, destination.Length);
                await response.ResponseStream.ReadExactlyAsync(destination[..length], cancellationToken).ConfigureAwait(false);
                return length;
            }
            catch (AmazonS3Exception e) when (e.StatusCode == HttpStatusCode.NotFound && e.ErrorCode != "NoSuchBucket")
            {
                return -1;
            }
            catch (AmazonClientException e) when (IsChecksumMismatch(e) && attempt < ChecksumAttempts)
            {
                await Task.Delay(ChecksumRetryDelay * attempt, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (Translate(e, "GET", key) is { } error)
            {
                throw error;
            }
        }
    }

    public async Task PutAsync(string key, ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        try
        {
            using var stream = new ReadOnlyMemoryStream(data);
            var request = new PutObjectRequest
            {
                BucketName = bucket,
                Key = prefix + key,
                InputStream = stream,
                AutoCloseStream = false,
                // S3-compatible servers (s3rver, older MinIO) do not speak aws-chunked uploads.
                UseChunkEncoding = false,
                DisablePayloadSigning = false,
            };
            await client.PutObjectAsync(request, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (Translate(e, "PUT", key) is { } error)
        {
            throw error;
        }
    }

    /// <summary>Deletes keys (missing ones are fine), in batches.</summary>
    public async Task DeleteAsync(IReadOnlyCollection<string> keys, CancellationToken cancellationToken)
    {
        try
        {
            foreach (var batch in keys.Chunk(DeleteBatch))
            {
                if (batch.Length == 1)
                {
                    await client.DeleteObjectAsync(bucket, prefix + batch[0], cancellationToken).ConfigureAwait(false);
                    continue;
                }

                var request = new DeleteObjectsRequest
                {
                    BucketName = bucket,
                    Quiet = true,
                    Objects = batch.Select(k => new KeyVersion { Key = prefix + k }).ToList(),
                };
                await client.DeleteObjectsAsync(request, cancellationToken).ConfigureAwait(false);
            }
        }
        catch (Exception e) when (Translate(e, "DELETE", keys.FirstOrDefault() ?? "") is { } error)
        {
            throw error;
        }
    }

    /// <summary>Every key under <paramref name="keyPrefix"/> (relative to the store prefix), in key order.</summary>
    public async Task<List<string>> ListAsync(string keyPrefix, CancellationToken cancellationToken)
    {
        var keys = new List<string>();
        var request = new ListObjectsV2Request { BucketName = bucket, Prefix = prefix + keyPrefix };
        try
        {
            while (true)
            {
                var response = await client.ListObjectsV2Async(request, cancellationToken).ConfigureAwait(false);
                foreach (var o in response.S3Objects ?? [])
                {
                    keys.Add(o.Key[prefix.Length..]);
                }

                if (response.IsTruncated != true || string.IsNullOrEmpty(response.NextContinuationToken))
                {
                    return keys;
                }

                request.ContinuationToken = response.NextContinuationToken;
            }
        }
        catch (Exception e) when (Translate(e, "LIST", keyPrefix) is { } error)
        {
            throw error;
        }
    }

    public void Dispose() => client.Dispose();

    private static bool IsChecksumMismatch(AmazonClientException e) =>
        e.Message.Contains("hash", StringComparison.OrdinalIgnoreCase);

    /// <summary>
    /// The store's view of an S3 failure: unreachable or failing service -> Unavailable (retry later),
    /// refused credentials -> PermissionDenied, missing bucket -> FailedPrecondition. Null for the rest.
    /// </summary>
    private StoreException? Translate(Exception e, string operation, string key)
    {
        var what = $"s3 {operation} of '{prefix}{key}' in bucket '{bucket}'";
        return e switch
        {
            AmazonS3Exception { ErrorCode: "NoSuchBucket" } =>
                new StoreException(StoreErrorCode.FailedPrecondition, $"{what}: the bucket does not exist; create it or fix the 'bucket' parameter", e),
            AmazonS3Exception { StatusCode: HttpStatusCode.Forbidden } s3 =>
                new StoreException(StoreErrorCode.PermissionDenied, $"{what}: access denied ({s3.ErrorCode}); check the credentials and the bucket policy", e),
            AmazonServiceException { StatusCode: >= HttpStatusCode.InternalServerError } or HttpRequestException or AmazonClientException or TimeoutException =>
                new StoreException(StoreErrorCode.Unavailable, $"{what} failed: {e.Message}", e),
            _ => null,
        };
    }
}

/// <summary>A read-only, seekable stream over memory (PutObject needs a stream; this one does not copy).</summary>
internal sealed class ReadOnlyMemoryStream(ReadOnlyMemory<byte> data) : Stream
{
    private int _position;

    public override bool CanRead => true;

    public override bool CanSeek => true;

    public override bool CanWrite => false;

    public override long Length => data.Length;

    public override long Position
    {
        get => _position;
        set => _position = (int)Math.Clamp(value, 0, data.Length);
    }

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override int Read(Span<byte> buffer)
    {
        var n = Math.Min(buffer.Length, data.Length - _position);
        data.Span.Slice(_position, n).CopyTo(buffer);
        _position += n;
        return n;
    }

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) =>
        ValueTask.FromResult(Read(buffer.Span));

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        Task.FromResult(Read(buffer.AsSpan(offset, count)));

    public override long Seek(long offset, SeekOrigin origin)
    {
        Position = origin switch
        {
            SeekOrigin.Begin => offset,
            SeekOrigin.Current => _position + offset,
            _ => data.Length + offset,
        };
        return _position;
    }

    public override void Flush()
    {
    }

    public override void SetLength(long value) => throw new NotSupportedException();

    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}
