using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;

namespace UblkCsi.NodePlugin.State;

/// <summary>
/// The node plugin's records of staged volumes: <c>volumes/&lt;sha256(volume_id)&gt;.json</c> under the
/// state directory (a volume_id never becomes a path itself), written atomically (temp file, fsync,
/// rename, directory fsync) so a crash leaves the old or the new record, never a torn one.
/// </summary>
/// <remarks>
/// The node-stage secrets of a volume (the rpc store's token, s3 keys) are needed again when a
/// restarted plugin reopens the store with no call from kubelet. They are kept beside the record in
/// <c>&lt;hash&gt;.secrets.json</c>, mode 0600 in a 0700 directory on the node's root-only state
/// hostPath, and are removed with the record. They never enter the record, logs or messages.
/// </remarks>
public sealed class StagedVolumeStore
{
    private const string RecordSuffix = ".json";
    private const string SecretsSuffix = ".secrets.json";

    /// <summary>Uses <c>volumes/</c> under <paramref name="stateDirectory"/>.</summary>
    public StagedVolumeStore(string stateDirectory)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(stateDirectory);
        Directory = Path.Combine(Path.GetFullPath(stateDirectory), "volumes");
    }

    /// <summary>Where the records are.</summary>
    public string Directory { get; }

    /// <summary>Writes (or replaces) a record and its secrets.</summary>
    public void Write(StagedVolumeRecord record, IReadOnlyDictionary<string, string> secrets)
    {
        EnsureDirectory();
        var key = KeyOf(record.VolumeId);
        var secretsPath = Path.Combine(Directory, key + SecretsSuffix);
        if (secrets.Count > 0)
        {
            WriteAtomically(secretsPath, new Dictionary<string, string>(secrets), StateJsonContext.Default.DictionaryStringString, secret: true);
        }
        else
        {
            File.Delete(secretsPath);
        }

        WriteAtomically(Path.Combine(Directory, key + RecordSuffix), record, StateJsonContext.Default.StagedVolumeRecord, secret: false);
    }

    /// <summary>The record of a volume, or null.</summary>
    public StagedVolumeRecord? TryRead(string volumeId) => TryReadFile(Path.Combine(Directory, KeyOf(volumeId) + RecordSuffix));

    /// <summary>The secrets kept for a volume (empty when none).</summary>
    public IReadOnlyDictionary<string, string> ReadSecrets(string volumeId)
    {
        var path = Path.Combine(Directory, KeyOf(volumeId) + SecretsSuffix);
        if (!File.Exists(path))
        {
            return new Dictionary<string, string>();
        }

        using var stream = File.OpenRead(path);
        return JsonSerializer.Deserialize(stream, StateJsonContext.Default.DictionaryStringString) ?? new Dictionary<string, string>();
    }

    /// <summary>Every readable record; damaged files are reported through <paramref name="unreadable"/> and skipped.</summary>
    public IReadOnlyList<StagedVolumeRecord> ReadAll(Action<string, string>? unreadable = null)
    {
        var records = new List<StagedVolumeRecord>();
        if (!System.IO.Directory.Exists(Directory))
        {
            return records;
        }

        foreach (var file in System.IO.Directory.EnumerateFiles(Directory, "*" + RecordSuffix))
        {
            if (file.EndsWith(SecretsSuffix, StringComparison.Ordinal))
            {
                continue;
            }

            try
            {
                if (TryReadFile(file) is { } record)
                {
                    records.Add(record);
                }
            }
            catch (Exception e) when (e is JsonException or IOException or NotSupportedException)
            {
                unreadable?.Invoke(file, e.Message);
            }
        }

        records.Sort((a, b) => a.DeviceId.CompareTo(b.DeviceId));
        return records;
    }

    /// <summary>Removes a volume's record and secrets; nothing happens when there are none.</summary>
    public void Delete(string volumeId)
    {
        var key = KeyOf(volumeId);
        var existed = false;
        foreach (var path in new[] { Path.Combine(Directory, key + RecordSuffix), Path.Combine(Directory, key + SecretsSuffix) })
        {
            if (File.Exists(path))
            {
                File.Delete(path);
                existed = true;
            }
        }

        if (existed)
        {
            SyncDirectory();
        }
    }

    /// <summary>The file name stem of a volume: SHA-256 of its ID, so no caller text becomes a path.</summary>
    public static string KeyOf(string volumeId) =>
        Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(volumeId)));

    private static StagedVolumeRecord? TryReadFile(string path)
    {
        if (!File.Exists(path))
        {
            return null;
        }

        using var stream = File.OpenRead(path);
        return JsonSerializer.Deserialize(stream, StateJsonContext.Default.StagedVolumeRecord);
    }

    private void EnsureDirectory()
    {
        if (!System.IO.Directory.Exists(Directory))
        {
            System.IO.Directory.CreateDirectory(Directory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        }
    }

    private void WriteAtomically<T>(string path, T value, JsonTypeInfo<T> type, bool secret)
    {
        var temp = $"{path}.tmp{Environment.ProcessId}";
        try
        {
            var options = new FileStreamOptions { Mode = FileMode.Create, Access = FileAccess.Write, Share = FileShare.None };
            if (secret)
            {
                options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
            }

            using (var stream = new FileStream(temp, options))
            {
                JsonSerializer.Serialize(stream, value, type);
                stream.Flush(flushToDisk: true);
            }

            File.Move(temp, path, overwrite: true);
        }
        catch
        {
            File.Delete(temp);
            throw;
        }

        SyncDirectory();
    }

    private void SyncDirectory() => Host.NativeMethods.SyncDirectory(Directory);
}
