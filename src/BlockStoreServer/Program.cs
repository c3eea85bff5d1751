// ublk-blockstore-server: serves the volumes of a file-store root over the block-store protocol,
// so the `rpc` store of ublk-csi can keep its data on another machine.
using UblkCsi.BlockStoreServer;
using UblkCsi.Hosting;

using var signals = new ShutdownSignals();
return await BlockStoreServerHost.RunAsync(HostInvocation.FromProcess(args, signals.Token));
