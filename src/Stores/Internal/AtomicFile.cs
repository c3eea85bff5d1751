using System.Text.Json;
using System.Text.Json.Serialization;

namespace UblkCsi.Stores.Internal;

/// <summary>Small JSON files replaced atomically: write a temp file, fsync, rename, fsync the directory.</summary>
internal static class AtomicFile
{
    public static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        WriteIndented = true,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.CamelCase) },
    };

    public static void WriteJson<T>(string path, T value)
    {
        var directory = Path.GetDirectoryName(path)!;
        var temp = Path.Combine(directory, $".{Path.GetFileName(path)}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None))
            {
                JsonSerializer.Serialize(stream, value, Json);
                stream.Flush(flushToDisk: true);
            }

            File.Move(temp, path, overwrite: true);
        }
        catch
        {
            File.Delete(temp);
            throw;
        }

        LinuxFile.SyncDirectory(directory);
    }

    /// <summary>Reads a JSON file; null when it does not exist.</summary>
    public static T? ReadJson<T>(string path)
        where T : class
    {
        try
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
            return JsonSerializer.Deserialize<T>(stream, Json)
                ?? throw new InvalidDataException($"{path} holds no metadata");
        }
        catch (FileNotFoundException)
        {
            return null;
        }
    }
}
