using System.Globalization;

namespace UblkCsi.Cli.Status;

/// <summary>The live counters of one volume, as the node plugin's /metrics reports them.</summary>
public sealed class VolumeCounters
{
    public double Reads { get; set; }
    public double Writes { get; set; }
    public double ReadBytes { get; set; }
    public double WrittenBytes { get; set; }
    public double Errors { get; set; }
    public double InFlight { get; set; }
    public double ThrottledSeconds { get; set; }

    /// <summary>
    /// Sums the per-volume series of a Prometheus text exposition (the node plugin's /metrics) by
    /// volume_id. Only the few series `status` shows are read; everything else is skipped. The format
    /// is the text exposition's sample lines: <c>name{label="value",...} number</c>.
    /// </summary>
    public static IReadOnlyDictionary<string, VolumeCounters> Parse(string exposition)
    {
        var byVolume = new Dictionary<string, VolumeCounters>(StringComparer.Ordinal);
        foreach (var line in exposition.Split('\n'))
        {
            if (!line.StartsWith("ublk_csi_volume_", StringComparison.Ordinal) || !TryParseSample(line, out var name, out var labels, out var value)
                || !labels.TryGetValue("volume_id", out var volumeId))
            {
                continue;
            }

            if (!byVolume.TryGetValue(volumeId, out var c))
            {
                byVolume[volumeId] = c = new VolumeCounters();
            }

            labels.TryGetValue("op", out var op);
            labels.TryGetValue("direction", out var direction);
            switch (name)
            {
                case "ublk_csi_volume_operations_total" when op == "read": c.Reads += value; break;
                case "ublk_csi_volume_operations_total" when op == "write": c.Writes += value; break;
                case "ublk_csi_volume_bytes_total" when direction == "read": c.ReadBytes += value; break;
                case "ublk_csi_volume_bytes_total" when direction == "write": c.WrittenBytes += value; break;
                case "ublk_csi_volume_errors_total": c.Errors += value; break;
                case "ublk_csi_volume_requests_in_flight": c.InFlight += value; break;
                case "ublk_csi_volume_qos_throttled_seconds_total": c.ThrottledSeconds += value; break;
            }
        }

        return byVolume;
    }

    private static bool TryParseSample(string line, out string name, out Dictionary<string, string> labels, out double value)
    {
        labels = new Dictionary<string, string>(StringComparer.Ordinal);
        value = 0;
        var brace = line.IndexOf('{');
        var close = brace < 0 ? -1 : line.IndexOf('}', brace);
        var space = line.LastIndexOf(' ');
        name = brace < 0 ? (space < 0 ? line : line[..space]) : line[..brace];
        if (brace >= 0 && close > brace)
        {
            // Label values here are volume IDs, ops and errnos: no escaped quotes or commas inside.
            foreach (var pair in line[(brace + 1)..close].Split(',', StringSplitOptions.RemoveEmptyEntries))
            {
                var eq = pair.IndexOf('=');
                if (eq > 0)
                {
                    labels[pair[..eq]] = pair[(eq + 1)..].Trim('"');
                }
            }
        }

        return space > 0 && double.TryParse(line[(space + 1)..], NumberStyles.Float, CultureInfo.InvariantCulture, out value);
    }
}
