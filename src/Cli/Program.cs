// ublk-csi: the operator tool. One file per command under Commands/; this table is the only
// place that lists them.
using UblkCsi.Cli;

return await CommandTable.RunAsync(args);
