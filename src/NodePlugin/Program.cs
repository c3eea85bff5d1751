// ublk-csi-node: the CSI node plugin (Identity + Node services), one per node.
using UblkCsi.Hosting;
using UblkCsi.NodePlugin;

using var signals = new ShutdownSignals();
return await NodeHost.RunAsync(HostInvocation.FromProcess(args, signals.Token));
