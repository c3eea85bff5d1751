using UblkCsi.Stores;

namespace UblkCsi.Stores.Tests.Conformance;

public sealed class MemoryStoreFixture : StoreFixture
{
    public override string Type => "memory";

    public override Task<StoreContext> CreateStoreAsync()
    {
        var parameters = new Dictionary<string, string> { ["capacity"] = "1Ti" };
        return Task.FromResult(new StoreContext(StoreRegistry.Open(Type, parameters), parameters, []));
    }

    public override Task<IVolumeStore> ReopenAsync(StoreContext context) => Task.FromResult(context.Store);

    public override IEnumerable<(Dictionary<string, string>, Dictionary<string, string>, string)> BadParameters(StoreContext context)
    {
        yield return (new() { ["capacity"] = "lots" }, [], "capacity");
        yield return (new() { ["colour"] = "blue" }, [], "colour");
        yield return (new(), new() { ["accessKeyId"] = "AKIAEXAMPLE" }, "accessKeyId");
    }
}

public sealed class FileStoreFixture : StoreFixture
{
    public override string Type => "file";

    public override Task<StoreContext> CreateStoreAsync()
    {
        var root = TempDirectory.Create("file-store");
        var parameters = new Dictionary<string, string> { ["root"] = root };
        var context = new StoreContext(StoreRegistry.Open(Type, parameters), parameters, []);
        context.Cleanup.Add(() => Directory.Delete(root, recursive: true));
        return Task.FromResult(context);
    }

    public override async Task<IVolumeStore> ReopenAsync(StoreContext context)
    {
        await context.Store.DisposeAsync();
        context.Store = StoreRegistry.Open(Type, context.Parameters, context.Secrets);
        return context.Store;
    }

    public override IEnumerable<(Dictionary<string, string>, Dictionary<string, string>, string)> BadParameters(StoreContext context)
    {
        yield return (new(), [], "root");
        yield return (new() { ["root"] = "relative/dir" }, [], "root");
        yield return (new() { ["root"] = "/nonexistent/ublk-csi-test" }, [], "root");
        yield return (new() { ["root"] = context.Parameters["root"], ["reflink"] = "sometimes" }, [], "reflink");
        yield return (new() { ["root"] = context.Parameters["root"], ["chunkSize"] = "4Mi" }, [], "chunkSize");
    }
}

public sealed class MemoryStoreConformance(MemoryStoreFixture fixture) : StoreConformanceTests(fixture), IClassFixture<MemoryStoreFixture>;

public sealed class FileStoreConformance(FileStoreFixture fixture) : StoreConformanceTests(fixture), IClassFixture<FileStoreFixture>;

/// <summary>Temp directories under the test run's temp root.</summary>
public static class TempDirectory
{
    public static string Create(string purpose) =>
        Directory.CreateTempSubdirectory($"ublk-csi-{purpose}-").FullName;
}
