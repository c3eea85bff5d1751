using System.Globalization;
using System.Text.Json;

namespace UblkCsi.Cli.Status;

/// <summary>What `status` shows of one volume the node plugin staged, read from its record.</summary>
public sealed record NodeVolume(
    string VolumeId,
    string Store,
    int DeviceId,
    string Access,
    IReadOnlyDictionary<string, string> Qos,
    long Recoveries,
    double? LastAdoptionGapSeconds);

/// <summary>
/// Reads the node plugin's staged-volume records (STATE_DIR/volumes/*.json, written by the plugin's
/// StagedVolumeStore) as JSON documents: only the fields `status` shows, so the operator tool depends
/// on the record format, not on the plugin's assembly and its server. The secrets files beside the
/// records are never opened.
/// </summary>
public static class NodeVolumeRecords
{
    private const string SecretsSuffix = ".secrets.json";

    public static IReadOnlyList<NodeVolume> ReadAll(string stateDirectory, Action<string> unreadable)
    {
        var directory = Path.Combine(stateDirectory, "volumes");
        if (!Directory.Exists(directory))
        {
            return [];
        }

        var volumes = new List<NodeVolume>();
        foreach (var path in Directory.EnumerateFiles(directory, "*.json").Where(p => !p.EndsWith(SecretsSuffix, StringComparison.Ordinal)).Order(StringComparer.Ordinal))
        {
            try
            {
                using var document = JsonDocument.Parse(File.ReadAllBytes(path));
                volumes.Add(Read(document.RootElement));
            }
            catch (Exception e) when (e is JsonException or IOException or KeyNotFoundException or InvalidOperationException or UnauthorizedAccessException)
            {
                unreadable($"{path}: {e.Message}");
            }
        }

        return volumes;
    }

    private static NodeVolume Read(JsonElement record)
    {
        var qos = new SortedDictionary<string, string>(StringComparer.Ordinal);
        if (record.TryGetProperty("qosParameters", out var parameters) && parameters.ValueKind == JsonValueKind.Object)
        {
            foreach (var p in parameters.EnumerateObject())
            {
                qos[p.Name] = p.Value.GetString() ?? string.Empty;
            }
        }

        var access = record.GetProperty("access").GetString() ?? "?";
        var fsType = record.TryGetProperty("fsType", out var fs) && fs.ValueKind == JsonValueKind.String ? fs.GetString() : null;
        return new NodeVolume(
            record.GetProperty("volumeId").GetString() ?? "?",
            record.GetProperty("storeType").GetString() ?? "?",
            record.GetProperty("deviceId").GetInt32(),
            fsType is null ? access.ToLowerInvariant() : $"{access.ToLowerInvariant()} {fsType}",
            qos,
            record.TryGetProperty("recoveries", out var r) ? r.GetInt64() : 0,
            record.TryGetProperty("lastAdoptionGapSeconds", out var g) && g.ValueKind == JsonValueKind.Number ? g.GetDouble() : null);
    }

    /// <summary>"maxIops=400,burstSeconds=2" or "-".</summary>
    public static string FormatQos(IReadOnlyDictionary<string, string> qos) =>
        qos.Count == 0 ? "-" : string.Join(',', qos.Select(p => string.Create(CultureInfo.InvariantCulture, $"{p.Key}={p.Value}")));
}
