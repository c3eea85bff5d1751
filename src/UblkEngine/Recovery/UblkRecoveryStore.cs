using System.Text.Json;
using UblkCsi.Engine.Interop;
using UblkCsi.Linux;

namespace UblkCsi.Engine.Recovery;

/// <summary>
/// Recovery records in one directory, one file per device (<c>ublkN.json</c>). Writes are atomic
/// and durable: temp file, fsync, rename over the old one, fsync of the directory, so a crash leaves
/// either the old or the new record, never a torn one.
/// </summary>
public sealed class UblkRecoveryStore
{
    public UblkRecoveryStore(string directory)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        Directory = Path.GetFullPath(directory);
    }

    public string Directory { get; }

    /// <summary>The record file of device <paramref name="deviceId"/>. Only ids, never user text, become names.</summary>
    public string PathFor(int deviceId)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(deviceId);
        return Path.Combine(Directory, $"ublk{deviceId}.json");
    }

    public void Write(UblkRecoveryRecord record)
    {
        var path = PathFor(record.DeviceId);
        System.IO.Directory.CreateDirectory(Directory);
        var temp = $"{path}.tmp{Environment.ProcessId}";
        try
        {
            using (var stream = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None))
            {
                JsonSerializer.Serialize(stream, record, RecoveryJsonContext.Default.UblkRecoveryRecord);
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

    /// <summary>The record of <paramref name="deviceId"/>, or null when there is none.</summary>
    public UblkRecoveryRecord? TryRead(int deviceId)
    {
        var path = PathFor(deviceId);
        if (!File.Exists(path))
        {
            return null;
        }

        using var stream = File.OpenRead(path);
        try
        {
            return JsonSerializer.Deserialize(stream, RecoveryJsonContext.Default.UblkRecoveryRecord)
                ?? throw new UblkException($"recovery record {path} is empty");
        }
        catch (JsonException e)
        {
            throw new UblkException($"recovery record {path} is not valid: {e.Message}", 0, e);
        }
    }

    /// <summary>Every readable record in the directory; unreadable files are skipped.</summary>
    public IReadOnlyList<UblkRecoveryRecord> ReadAll()
    {
        var records = new List<UblkRecoveryRecord>();
        if (!System.IO.Directory.Exists(Directory))
        {
            return records;
        }

        foreach (var file in System.IO.Directory.EnumerateFiles(Directory, "ublk*.json"))
        {
            var name = Path.GetFileNameWithoutExtension(file);
            if (!int.TryParse(name.AsSpan(4), System.Globalization.NumberStyles.None, null, out var id))
            {
                continue;
            }

            try
            {
                if (TryRead(id) is { } record)
                {
                    records.Add(record);
                }
            }
            catch (UblkException)
            {
                // A foreign or damaged file is not a device we can adopt.
            }
        }

        records.Sort((a, b) => a.DeviceId.CompareTo(b.DeviceId));
        return records;
    }

    public void Delete(int deviceId)
    {
        var path = PathFor(deviceId);
        if (File.Exists(path))
        {
            File.Delete(path);
            SyncDirectory();
        }
    }

    private void SyncDirectory()
    {
        using var fd = FileDescriptorHandle.TryOpen(Directory, Libc.O_RDONLY | Libc.O_DIRECTORY, out _);
        if (fd != null)
        {
            Libc.Fsync(fd.Fd);
        }
    }
}
