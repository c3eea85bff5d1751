// ublk-csi-bench: the benchmarks. One file per command under Commands/; this table is the only
// place that lists them.
using UblkCsi.Benchmarks;
using UblkCsi.Cli;

return await CommandRunner.RunAsync(
    "ublk-csi-bench",
    [
        new("bench-engine", BenchEngineCommand.Summary, BenchEngineCommand.RunAsync),
        new("bench-grpc", BenchGrpcCommand.Summary, BenchGrpcCommand.RunAsync),
        new("bench-stores", BenchStoresCommand.Summary, BenchStoresCommand.RunAsync),
        new("bench-flush-storm", BenchFlushStormCommand.Summary, BenchFlushStormCommand.RunAsync),
        new("bench-s3-flush", BenchS3FlushCommand.Summary, BenchS3FlushCommand.RunAsync),
    ],
    args);
