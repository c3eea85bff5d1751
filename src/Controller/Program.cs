// ublk-csi-controller: the CSI controller plugin (Identity + Controller services).
using UblkCsi.Controller;
using UblkCsi.Hosting;

using var signals = new ShutdownSignals();
return await ControllerHost.RunAsync(HostInvocation.FromProcess(args, signals.Token));
