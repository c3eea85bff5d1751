using Xunit.Abstractions;

// The node plugin rollout touches every volume of the cluster: tests run one at a time.
[assembly: CollectionBehavior(DisableTestParallelization = true)]

namespace UblkCsi.E2E;

public sealed class FileStoreTests(ITestOutputHelper log)
{
    const string Store = "file";
    [StoreFact(Store)] public Task WriteAndReadBack() => Scenarios.WriteReadAsync(Store, log);
    [StoreFact(Store)] public Task RawBlock() => Scenarios.RawBlockAsync(Store, log);
    [StoreFact(Store, Need.Snapshot)] public Task SnapshotRestore() => Scenarios.SnapshotRestoreAsync(Store, log);
    [StoreFact(Store)] public Task Clone() => Scenarios.CloneAsync(Store, log);
    [StoreFact(Store, Need.Expansion)] public Task Expansion() => Scenarios.ExpandAsync(Store, log);
    [StoreFact(Store)] public Task NodePluginRolloutUnderWrites() => Scenarios.NodeRolloutAsync(Store, log);
}

public sealed class S3StoreTests(ITestOutputHelper log)
{
    const string Store = "s3";
    [StoreFact(Store)] public Task WriteAndReadBack() => Scenarios.WriteReadAsync(Store, log);
    [StoreFact(Store)] public Task RawBlock() => Scenarios.RawBlockAsync(Store, log);
    [StoreFact(Store, Need.Snapshot)] public Task SnapshotRestore() => Scenarios.SnapshotRestoreAsync(Store, log);
    [StoreFact(Store)] public Task Clone() => Scenarios.CloneAsync(Store, log);
    [StoreFact(Store, Need.Expansion)] public Task Expansion() => Scenarios.ExpandAsync(Store, log);
    [StoreFact(Store)] public Task NodePluginRolloutUnderWrites() => Scenarios.NodeRolloutAsync(Store, log);
}

public sealed class RpcStoreTests(ITestOutputHelper log)
{
    const string Store = "rpc";
    [StoreFact(Store)] public Task WriteAndReadBack() => Scenarios.WriteReadAsync(Store, log);
    [StoreFact(Store)] public Task RawBlock() => Scenarios.RawBlockAsync(Store, log);
    [StoreFact(Store, Need.Snapshot)] public Task SnapshotRestore() => Scenarios.SnapshotRestoreAsync(Store, log);
    [StoreFact(Store)] public Task Clone() => Scenarios.CloneAsync(Store, log);
    [StoreFact(Store, Need.Expansion)] public Task Expansion() => Scenarios.ExpandAsync(Store, log);
    [StoreFact(Store)] public Task NodePluginRolloutUnderWrites() => Scenarios.NodeRolloutAsync(Store, log);
}
