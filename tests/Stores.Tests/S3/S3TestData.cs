using Amazon.S3;
using Amazon.S3.Model;
using UblkCsi.Engine;
using UblkCsi.Stores.S3;
using UblkCsi.TestSupport;

namespace UblkCsi.Stores.Tests.S3;

/// <summary>Helpers the s3 behaviour tests share: seeded data, reads, and listing the bucket behind the store's back.</summary>
internal static class S3TestData
{
    public static byte[] Filled(int length, int seed)
    {
        var data = new byte[length];
        new Random(seed).NextBytes(data);
        return data;
    }

    public static async Task<byte[]> ReadAsync(IBlockBackend backend, long offset, int length)
    {
        var data = new byte[length];
        await backend.ReadAsync(offset, data);
        return data;
    }

    /// <summary>The objects under <paramref name="keyPrefix"/> in the test bucket, straight from s3rver.</summary>
    public static async Task<List<S3Object>> ListAsync(LocalS3Server server, string keyPrefix)
    {
        var config = new AmazonS3Config { ServiceURL = server.Endpoint, ForcePathStyle = true, AuthenticationRegion = "us-east-1" };
        using var client = new AmazonS3Client(LocalS3Server.Credentials, config);
        var response = await client.ListObjectsV2Async(new ListObjectsV2Request { BucketName = server.Bucket, Prefix = keyPrefix });
        return response.S3Objects ?? [];
    }
}
