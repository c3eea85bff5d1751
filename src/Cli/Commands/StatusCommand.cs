using System.Globalization;
using System.Text.Json;
using UblkCsi.Cli.Status;
using UblkCsi.Engine;

namespace UblkCsi.Cli;

/// <summary>
/// <c>ublk-csi status</c> on a node: every volume the node plugin staged, with its device and the
/// device's state in the kernel, its store, access, QoS limits, recoveries and, when the plugin's
/// metrics endpoint is given, its live counters. A table for people, <c>--json</c> for scripts.
/// </summary>
internal static class StatusCommand
{
    public const string Summary = "the node plugin's volumes: device, state, store, QoS limits, live counters (--json)";

    private const string DefaultStateDirectory = "/var/lib/ublk-csi";

    private const string Usage =
        "usage: ublk-csi status [--state-dir DIR] [--metrics HOST:PORT] [--json]\n" +
        $"  --state-dir  the node plugin's --state-dir (default {DefaultStateDirectory})\n" +
        "  --metrics    the node plugin's --metrics-address, for live counters (default: none shown)";

    public static async Task<int> RunAsync(string[] args)
    {
        var stateDir = DefaultStateDirectory;
        string? metrics = null;
        var json = false;
        for (var i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--state-dir": stateDir = CommandOptions.Value(args, ref i); break;
                case "--metrics": metrics = CommandOptions.Value(args, ref i); break;
                case "--json": json = true; break;
                case "-h" or "--help": Console.Out.WriteLine(Usage); return 0;
                default: throw new CliException($"unknown option '{args[i]}'\n{Usage}", 2);
            }
        }

        var volumes = NodeVolumeRecords.ReadAll(stateDir, problem => Console.Error.WriteLine($"ublk-csi status: unreadable record {problem}"));
        var states = DeviceStates();
        var counters = metrics is null ? null : VolumeCounters.Parse(await ScrapeAsync(metrics));
        if (json)
        {
            WriteJson(volumes, states, counters);
        }
        else
        {
            WriteTable(volumes, states, counters);
        }

        return 0;
    }

    /// <summary>Device states from the kernel, or null when this host has no ublk driver (the records still show).</summary>
    private static Dictionary<int, UblkDeviceState>? DeviceStates()
    {
        try
        {
            using var control = ControlDevice.Open();
            return control.ListDevices().ToDictionary(d => d.Id, d => d.State);
        }
        catch (Exception e) when (e is CliException or UblkException or IOException)
        {
            return null;
        }
    }

    private static string StateOf(Dictionary<int, UblkDeviceState>? states, int deviceId) =>
        states is null ? "unknown" : states.TryGetValue(deviceId, out var s) ? s.ToString().ToLowerInvariant() : "gone";

    private static async Task<string> ScrapeAsync(string address)
    {
        var url = address.Contains("://", StringComparison.Ordinal) ? address : $"http://{address}";
        url = url.TrimEnd('/') + (url.EndsWith("/metrics", StringComparison.Ordinal) ? string.Empty : "/metrics");
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
        try
        {
            return await http.GetStringAsync(url);
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException or UriFormatException or InvalidOperationException)
        {
            throw new CliException($"--metrics: cannot read {url}: {e.Message} (is the node plugin started with --metrics-address?)");
        }
    }

    private static void WriteTable(IReadOnlyList<NodeVolume> volumes, Dictionary<int, UblkDeviceState>? states, IReadOnlyDictionary<string, VolumeCounters>? counters)
    {
        var rows = new List<string[]>
        {
            counters is null
                ? ["DEVICE", "STATE", "VOLUME", "STORE", "ACCESS", "QOS", "RECOVERIES"]
                : ["DEVICE", "STATE", "VOLUME", "STORE", "ACCESS", "QOS", "RECOVERIES", "READS", "WRITES", "READ", "WRITTEN", "ERRORS", "IN FLIGHT", "THROTTLED"],
        };
        foreach (var v in volumes)
        {
            var row = new List<string> { $"/dev/ublkb{v.DeviceId}", StateOf(states, v.DeviceId), v.VolumeId, v.Store, v.Access, NodeVolumeRecords.FormatQos(v.Qos), Recoveries(v) };
            if (counters is not null)
            {
                var c = counters.TryGetValue(v.VolumeId, out var found) ? found : new VolumeCounters();
                row.AddRange([Count(c.Reads), Count(c.Writes), ListCommand.FormatSize((long)c.ReadBytes), ListCommand.FormatSize((long)c.WrittenBytes),
                    Count(c.Errors), Count(c.InFlight), string.Create(CultureInfo.InvariantCulture, $"{c.ThrottledSeconds:0.#}s")]);
            }

            rows.Add([.. row]);
        }

        var widths = Enumerable.Range(0, rows[0].Length).Select(i => rows.Max(r => r[i].Length)).ToArray();
        foreach (var row in rows)
        {
            Console.Out.WriteLine(string.Join("  ", row.Select((cell, i) => cell.PadRight(widths[i]))).TrimEnd());
        }

        if (volumes.Count == 0)
        {
            Console.Out.WriteLine("(no staged volumes)");
        }
    }

    private static string Recoveries(NodeVolume v) =>
        v.LastAdoptionGapSeconds is { } gap ? string.Create(CultureInfo.InvariantCulture, $"{v.Recoveries} (last gap {gap:0.0}s)") : v.Recoveries.ToString(CultureInfo.InvariantCulture);

    private static string Count(double value) => ((long)value).ToString(CultureInfo.InvariantCulture);

    private static void WriteJson(IReadOnlyList<NodeVolume> volumes, Dictionary<int, UblkDeviceState>? states, IReadOnlyDictionary<string, VolumeCounters>? counters)
    {
        using var stdout = Console.OpenStandardOutput();
        using (var w = new Utf8JsonWriter(stdout, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartArray();
            foreach (var v in volumes)
            {
                w.WriteStartObject();
                w.WriteString("volumeId", v.VolumeId);
                w.WriteString("device", $"/dev/ublkb{v.DeviceId}");
                w.WriteString("state", StateOf(states, v.DeviceId));
                w.WriteString("store", v.Store);
                w.WriteString("access", v.Access);
                w.WriteStartObject("qos");
                foreach (var (key, value) in v.Qos)
                {
                    w.WriteString(key, value);
                }

                w.WriteEndObject();
                w.WriteNumber("recoveries", v.Recoveries);
                if (v.LastAdoptionGapSeconds is { } gap)
                {
                    w.WriteNumber("lastAdoptionGapSeconds", gap);
                }

                if (counters is not null)
                {
                    var c = counters.TryGetValue(v.VolumeId, out var found) ? found : new VolumeCounters();
                    w.WriteStartObject("counters");
                    w.WriteNumber("reads", c.Reads);
                    w.WriteNumber("writes", c.Writes);
                    w.WriteNumber("readBytes", c.ReadBytes);
                    w.WriteNumber("writtenBytes", c.WrittenBytes);
                    w.WriteNumber("errors", c.Errors);
                    w.WriteNumber("inFlight", c.InFlight);
                    w.WriteNumber("throttledSeconds", c.ThrottledSeconds);
                    w.WriteEndObject();
                }

                w.WriteEndObject();
            }

            w.WriteEndArray();
        }

        stdout.WriteByte((byte)'\n');
    }
}
