// Measures what an idle device costs: the resident-set growth of this process per device for N
// null-store devices (1 queue, depth 128, the many-devices configuration), after a warm-up device
// so JIT and first-use costs are not counted. Prints one line of figures; exit 1 above the budget.
using UblkCsi.Engine;
using UblkCsi.Engine.Backends;

var count = args.Length > 0 ? int.Parse(args[0], System.Globalization.CultureInfo.InvariantCulture) : 50;
const double BudgetKiB = 256;

using var control = UblkControl.Open();
var options = new UblkDeviceOptions { Queues = 1, Depth = 128, RecoveryStateDirectory = null };
await (await UblkDevice.CreateAsync(control, new NullBackend(1L << 30), options)).StopAsync();
Settle();
var before = ResidentKiB();

var devices = new List<UblkDevice>();
for (var i = 0; i < count; i++)
{
    devices.Add(await UblkDevice.CreateAsync(control, new NullBackend(1L << 30), options));
}

await Task.Delay(2000);
Settle();
var after = ResidentKiB();
var perDevice = (after - before) / (double)count;
Console.WriteLine(
    $"idle devices={count} rss_before_kib={before} rss_after_kib={after} per_device_kib={perDevice:0.0} budget_kib={BudgetKiB} " +
    $"ratio_to_budget={perDevice / BudgetKiB:0.00} managed_heap_kib={GC.GetTotalMemory(false) / 1024}");

foreach (var device in devices)
{
    await device.StopAsync();
}

var left = control.ListDevices().Count;
Console.WriteLine($"removed {count} devices; ublk devices left: {left}");
return perDevice <= BudgetKiB && left == 0 ? 0 : 1;

static void Settle()
{
    GC.Collect();
    GC.WaitForPendingFinalizers();
    GC.Collect();
}

static long ResidentKiB() => long.Parse(
    File.ReadLines("/proc/self/status").First(l => l.StartsWith("VmRSS:", StringComparison.Ordinal))
        .Split(' ', StringSplitOptions.RemoveEmptyEntries)[1],
    System.Globalization.CultureInfo.InvariantCulture);
