using UblkCsi.Stores.S3;
using UblkCsi.Stores.Tests.Conformance;
using UblkCsi.TestSupport;

namespace UblkCsi.Stores.Tests.S3;

/// <summary>The s3 volume's own metrics (cache, dirty bytes, uploads) against a real s3rver.</summary>
public sealed class S3VolumeMetricsTests(S3StoreFixture fixture) : IClassFixture<S3StoreFixture>
{
    private const int MiB = 1 << 20;

    [Fact]
    public async Task DirtyBytesUploadsCacheHitsAndMissesAreCounted()
    {
        await using var ctx = fixture.CreateStore([]);
        var volume = await ctx.Store.CreateVolumeAsync(new CreateVolumeRequest("metered", 4 * MiB));
        await using (var writer = await ctx.Store.OpenVolumeAsync(volume.Id))
        {
            var s3 = Assert.IsType<S3Volume>(writer);
            await writer.WriteAsync(0, new byte[MiB].Select((_, i) => (byte)(i | 1)).ToArray()); // chunk 0, all non-zero
            Assert.Equal(MiB, Metric(s3, "s3_dirty_bytes"));
            Assert.Equal(0, Metric(s3, "s3_uploads_total"));
            await writer.FlushAsync();
            Assert.Equal(0, Metric(s3, "s3_dirty_bytes"));
            Assert.Equal(1, Metric(s3, "s3_uploads_total"));
            Assert.Equal(0, Metric(s3, "s3_upload_failures_total"));
            var durations = s3.ReadMetrics().Histograms.Single(h => h.Name == "s3_upload_duration_seconds");
            Assert.Equal(1, durations.Buckets.Sum());
            Assert.True(durations.SumSeconds > 0);
        }

        // A fresh cache: the first read of chunk 0 waits for its download, the second is served locally,
        // and an absent chunk (zeros) needs no download either.
        await using var reader = await (await fixture.ReopenAsync(ctx)).OpenVolumeAsync(volume.Id);
        var cold = Assert.IsType<S3Volume>(reader);
        var buffer = new byte[4096];
        await reader.ReadAsync(0, buffer);
        Assert.Equal((1.0, 0.0), (Metric(cold, "s3_cache_misses_total"), Metric(cold, "s3_cache_hits_total")));
        await reader.ReadAsync(8192, buffer);
        await reader.ReadAsync(3L * MiB, buffer);
        Assert.Equal((1.0, 2.0), (Metric(cold, "s3_cache_misses_total"), Metric(cold, "s3_cache_hits_total")));
    }

    [Fact]
    public async Task AFailedUploadIsCounted()
    {
        var server = await LocalS3Server.StartAsync();
        var cache = TempDirectory.Create("s3-upload-fails");
        var stopped = false;
        try
        {
            var parameters = server.StoreParameters("fails", cache);
            parameters["chunkSize"] = "1Mi";
            await using var store = StoreRegistry.Open("s3", parameters, LocalS3Server.StoreSecrets());
            var volume = await store.CreateVolumeAsync(new CreateVolumeRequest("fails", 2 * MiB));
            var s3 = Assert.IsType<S3Volume>(await store.OpenVolumeAsync(volume.Id));
            await s3.WriteAsync(0, new byte[MiB].Select(_ => (byte)7).ToArray());
            await server.DisposeAsync(); // the bucket is gone: the flush's upload cannot succeed
            stopped = true;
            await Assert.ThrowsAnyAsync<Exception>(async () => await s3.FlushAsync());
            Assert.True(Metric(s3, "s3_upload_failures_total") >= 1);
            Assert.Equal(0, Metric(s3, "s3_uploads_total"));
            Assert.Equal(MiB, Metric(s3, "s3_dirty_bytes")); // the chunk stays dirty for the next attempt
            s3.Abandon();
        }
        finally
        {
            if (!stopped)
            {
                await server.DisposeAsync();
            }

            Directory.Delete(cache, recursive: true);
        }
    }

    private static double Metric(S3Volume volume, string name) => volume.ReadMetrics().Values.Single(v => v.Name == name).Value;
}
