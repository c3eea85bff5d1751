// ublk-csi: the operator tool. One file per command under Commands/; this table is the only
// place that lists them. The benchmarks are a program of their own (bench/Benchmarks).
using UblkCsi.Cli;

return await CommandRunner.RunAsync(
    "ublk-csi",
    [
        new("attach", AttachCommand.Summary, AttachCommand.RunAsync),
        new("list", ListCommand.Summary, ListCommand.RunAsync),
        new("status", StatusCommand.Summary, StatusCommand.RunAsync),
        new("detach", DetachCommand.Summary, DetachCommand.RunAsync),
        new("recover", RecoverCommand.Summary, RecoverCommand.RunAsync),
        new("demo", DemoCommand.Summary, DemoCommand.RunAsync),
        new("csi-call", CsiCallCommand.Summary, CsiCallCommand.RunAsync),
        new("create-volume", CreateVolumeCommand.Summary, CreateVolumeCommand.RunAsync),
        new("expand-volume", CreateVolumeCommand.ExpandSummary, CreateVolumeCommand.RunExpandAsync),
    ],
    args);
