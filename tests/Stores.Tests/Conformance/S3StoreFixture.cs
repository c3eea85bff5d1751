using UblkCsi.Stores;
using UblkCsi.Stores.S3;
using UblkCsi.TestSupport;

namespace UblkCsi.Stores.Tests.Conformance;

/// <summary>A real s3rver on a loopback port; every test gets its own key prefix and cache directory.</summary>
public sealed class S3StoreFixture : StoreFixture
{
    private LocalS3Server? _server;
    private int _stores;

    public LocalS3Server Server => _server ?? throw new InvalidOperationException("not started");

    public override string Type => "s3";

    public override async Task InitializeAsync() => _server = await LocalS3Server.StartAsync();

    public override async Task DisposeAsync()
    {
        if (_server is not null)
        {
            await _server.DisposeAsync();
        }
    }

    public override Task<StoreContext> CreateStoreAsync() => Task.FromResult(CreateStore(new Dictionary<string, string>()));

    /// <summary>A store with extra parameters (small chunks, tight dirty limits).</summary>
    public StoreContext CreateStore(Dictionary<string, string> overrides)
    {
        var cache = TempDirectory.Create("s3-cache");
        var parameters = Server.StoreParameters($"test-{Interlocked.Increment(ref _stores)}-{Guid.NewGuid():N}", cache);
        parameters["chunkSize"] = "1Mi"; // several chunks per test volume: boundaries get exercised
        parameters["dirtyLimit"] = "4Mi";
        parameters["cacheSize"] = "8Mi";
        foreach (var (k, v) in overrides)
        {
            parameters[k] = v;
        }

        var secrets = LocalS3Server.StoreSecrets();
        var context = new StoreContext(StoreRegistry.Open(Type, parameters, secrets), parameters, secrets);
        context.Cleanup.Add(() => Directory.Delete(parameters["cacheDir"], recursive: true));
        return context;
    }

    public override async Task<IVolumeStore> ReopenAsync(StoreContext context)
    {
        await context.Store.DisposeAsync();

        // A node that lost its disk: nothing but the bucket remains.
        Directory.Delete(context.Parameters["cacheDir"], recursive: true);
        Directory.CreateDirectory(context.Parameters["cacheDir"]);
        context.Store = StoreRegistry.Open(Type, context.Parameters, context.Secrets);
        return context.Store;
    }

    public override IEnumerable<(Dictionary<string, string>, Dictionary<string, string>, string)> BadParameters(StoreContext context)
    {
        Dictionary<string, string> With(string key, string value)
        {
            var p = new Dictionary<string, string>(context.Parameters) { [key] = value };
            return p;
        }

        var secrets = context.Secrets;
        yield return (new Dictionary<string, string>(context.Parameters.Where(kv => kv.Key != "bucket")), secrets, "bucket");
        yield return (With("bucket", "Not_A_Bucket"), secrets, "bucket");
        yield return (With("chunkSize", "3000"), secrets, "chunkSize");
        yield return (With("chunkSize", "1Gi"), secrets, "chunkSize");
        yield return (With("endpoint", "ftp://example"), secrets, "endpoint");
        yield return (With("endpoint", "http://user:pw@host"), secrets, "endpoint");
        yield return (With("pathStyle", "maybe"), secrets, "pathStyle");
        yield return (With("prefix", "a/../b"), secrets, "prefix");
        yield return (With("cacheDir", "relative"), secrets, "cacheDir");
        yield return (With("uploadConcurrency", "0"), secrets, "uploadConcurrency");
        yield return (With("dirtyLimit", "1Mi"), secrets, "dirtyLimit");
        yield return (With("root", "/tmp"), secrets, "root");
        yield return (context.Parameters, new Dictionary<string, string> { ["accessKeyId"] = "AKIASECRETVALUE1" }, "secretAccessKey");
        yield return (context.Parameters, new Dictionary<string, string> { ["secretAccessKey"] = "hunter2-secret-value" }, "accessKeyId");
        yield return (context.Parameters, new Dictionary<string, string>(secrets) { ["password"] = "hunter2-secret-value" }, "password");
    }
}

public sealed class S3StoreConformance(S3StoreFixture fixture) : StoreConformanceTests(fixture), IClassFixture<S3StoreFixture>;
