using UblkCsi.Stores;

namespace UblkCsi.Stores.Tests.Conformance;

/// <summary>
/// What the conformance suite needs from one store type. A fixture is shared by a test class; every
/// test gets its own isolated store (fresh directory, fresh bucket prefix) from <see cref="CreateStoreAsync"/>.
/// To run the suite against a new store: write a fixture and one line
/// <c>public sealed class XConformance(XFixture f) : StoreConformanceTests(f), IClassFixture&lt;XFixture&gt;;</c>.
/// </summary>
public abstract class StoreFixture : IAsyncLifetime
{
    /// <summary>Registry type name.</summary>
    public abstract string Type { get; }

    /// <summary>A new, empty, isolated store, opened through <see cref="StoreRegistry"/> from <see cref="StoreContext.Parameters"/>.</summary>
    public abstract Task<StoreContext> CreateStoreAsync();

    /// <summary>
    /// The same store opened anew, as after a process restart: nothing cached survives (the s3 fixture
    /// also deletes the local cache directory). Stores that live in memory return the same instance.
    /// </summary>
    public abstract Task<IVolumeStore> ReopenAsync(StoreContext context);

    /// <summary>Parameter maps the store must reject, with the parameter name the error must carry.</summary>
    public abstract IEnumerable<(Dictionary<string, string> Parameters, Dictionary<string, string> Secrets, string ParameterName)> BadParameters(StoreContext context);

    public virtual Task InitializeAsync() => Task.CompletedTask;

    public virtual Task DisposeAsync() => Task.CompletedTask;
}

/// <summary>One isolated store plus how it was opened.</summary>
public sealed class StoreContext(IVolumeStore store, Dictionary<string, string> parameters, Dictionary<string, string> secrets) : IAsyncDisposable
{
    public IVolumeStore Store { get; set; } = store;

    public Dictionary<string, string> Parameters { get; } = parameters;

    public Dictionary<string, string> Secrets { get; } = secrets;

    /// <summary>Extra things to clean up (temp directories).</summary>
    public List<Action> Cleanup { get; } = [];

    public async ValueTask DisposeAsync()
    {
        await Store.DisposeAsync();
        foreach (var action in Cleanup)
        {
            action();
        }
    }
}
