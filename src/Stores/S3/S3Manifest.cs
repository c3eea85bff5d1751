using System.Buffers.Binary;
using System.Globalization;
using System.Text.Json;
using UblkCsi.Stores.Internal;

namespace UblkCsi.Stores.S3;

/// <summary>
/// Object names of an s3 store under its prefix:
/// <list type="bullet">
/// <item><c>volumes/ID.json</c>, <c>snapshots/ID.json</c>: manifests (metadata + chunk map).</item>
/// <item><c>chunks/UUID/IIIIIIII-VVVVVVVVVVVV</c>: chunk I of the volume incarnation UUID, version V
/// (hex). Immutable once written: a rewrite of the chunk is a new version.</item>
/// <item><c>refs/UUID/snap-ID</c>, <c>refs/UUID/vol-ID</c>: empty markers saying "this snapshot or
/// clone may reference chunks of UUID", written before the manifest that references them.</item>
/// <item><c>writers/ID/GGGGGGGGGGGGGGGG.lease</c>: writer generation G holds (or held) the volume
/// open for writing; <c>writers/ID/G/base.json</c>: its full chunk map (written at open and by
/// compaction); <c>writers/ID/G/journal-SSSSSSSSSSSSSSSS.json</c>: the deltas of its flushes. Every
/// key a writer commits names its generation, so an older writer can never replace what a newer one
/// reads (see <see cref="S3WriterLog"/>).</item>
/// </list>
/// </summary>
internal static class S3Keys
{
    public const string Volumes = "volumes/";
    public const string Snapshots = "snapshots/";
    public const string Chunks = "chunks/";
    public const string Refs = "refs/";
    public const string PublicationsFolder = "publications/";
    public const string QosFolder = "qos/";
    public const string WritersFolder = "writers/";

    public static string Volume(string id) => Volumes + id + ".json";

    public static string Snapshot(string id) => Snapshots + id + ".json";

    public static string Publications(string id) => PublicationsFolder + id + ".json";

    public static string Qos(string id) => QosFolder + id + ".json";

    public static string WriterPrefix(string id) => WritersFolder + id + "/";

    public static string Lease(string id, ulong generation) =>
        string.Create(CultureInfo.InvariantCulture, $"{WritersFolder}{id}/{generation:x16}.lease");

    public static string WriterBase(string id, ulong generation) =>
        string.Create(CultureInfo.InvariantCulture, $"{WritersFolder}{id}/{generation:x16}/base.json");

    public static string Journal(string id, ulong generation, ulong sequence) =>
        string.Create(CultureInfo.InvariantCulture, $"{WritersFolder}{id}/{generation:x16}/journal-{sequence:x16}.json");

    public static string Chunk(string uuid, long index, ulong version) =>
        string.Create(CultureInfo.InvariantCulture, $"{Chunks}{uuid}/{index:x8}-{version:x12}");

    public static string ChunkPrefix(string uuid) => Chunks + uuid + "/";

    public static string RefPrefix(string uuid) => Refs + uuid + "/";

    public static string Ref(string uuid, bool snapshot, string id) => RefPrefix(uuid) + (snapshot ? "snap-" : "vol-") + id;

    /// <summary>Parses "IIIIIIII-VVVVVVVVVVVV" (the part after the UUID folder).</summary>
    public static bool TryParseChunk(string name, out long index, out ulong version)
    {
        index = 0;
        version = 0;
        var dash = name.IndexOf('-');
        return dash > 0
            && long.TryParse(name.AsSpan(0, dash), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out index)
            && ulong.TryParse(name.AsSpan(dash + 1), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out version);
    }
}

/// <summary>One incarnation whose chunks a manifest may reference, and the volume that writes it.</summary>
internal sealed record LineageEntry(string Uuid, string VolumeId);

/// <summary>
/// A volume's or snapshot's manifest. The chunk map is one 64-bit entry per chunk: 0 = absent
/// (reads as zeros), else (lineage index &lt;&lt; 48) | version, naming the object
/// chunks/Lineage[index].Uuid/chunk-version. A volume's own incarnation is the last lineage entry.
/// </summary>
internal sealed class S3Manifest
{
    public const int CurrentFormat = 1;
    public const int VersionBits = 48;
    public const ulong VersionMask = (1UL << VersionBits) - 1;

    public int Format { get; set; } = CurrentFormat;

    public string Kind { get; set; } = "volume";

    public string Id { get; set; } = "";

    public string Name { get; set; } = "";

    public long SizeBytes { get; set; }

    public int ChunkSize { get; set; }

    public DateTimeOffset CreatedUtc { get; set; }

    /// <summary>Volumes: what the volume was created from.</summary>
    public VolumeSourceKind? SourceKind { get; set; }

    public string? SourceId { get; set; }

    /// <summary>Snapshots: the volume it was taken of.</summary>
    public string? SourceVolumeId { get; set; }

    /// <summary>Volumes: this incarnation's UUID (new for every create, so a recreated name never sees old chunks).</summary>
    public string? Uuid { get; set; }

    public List<LineageEntry> Lineage { get; set; } = [];

    /// <summary>
    /// Every version of this volume's incarnation below this number is either referenced here or
    /// garbage; versions at or above it may be uploads in flight. Garbage collection never deletes
    /// versions at or above it while the volume exists.
    /// </summary>
    public ulong NextVersion { get; set; } = 1;

    /// <summary>
    /// In a volume's state as read (<see cref="S3WriterLog"/>): the writer generation whose base and
    /// journal it comes from (0: no writer ever committed). A restarted writer adopts its
    /// predecessor's cache only if the state is exactly what the predecessor last committed.
    /// </summary>
    public ulong WriterGeneration { get; set; }

    /// <summary>The last journal sequence of <see cref="WriterGeneration"/> applied to this state (0: its base alone).</summary>
    public ulong JournalSeq { get; set; }

    /// <summary>The chunk map, little-endian 64-bit entries, base64.</summary>
    public string Chunks { get; set; } = "";

    public bool IsSnapshot => Kind == "snapshot";

    public long ChunkCount => (SizeBytes + ChunkSize - 1) / ChunkSize;

    public ulong[] ReadEntries()
    {
        var bytes = Convert.FromBase64String(Chunks);
        var entries = new ulong[ChunkCount];
        for (var i = 0; i < Math.Min(entries.Length, bytes.Length / 8); i++)
        {
            entries[i] = BinaryPrimitives.ReadUInt64LittleEndian(bytes.AsSpan(i * 8));
        }

        return entries;
    }

    public void WriteEntries(ReadOnlySpan<ulong> entries)
    {
        // Trailing absent chunks are implicit: a fresh or sparse-at-the-end volume stays small.
        var used = entries.Length;
        while (used > 0 && entries[used - 1] == 0)
        {
            used--;
        }

        var bytes = new byte[used * 8];
        for (var i = 0; i < used; i++)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(i * 8), entries[i]);
        }

        Chunks = Convert.ToBase64String(bytes);
    }

    public static ulong Entry(int lineageIndex, ulong version) => ((ulong)lineageIndex << VersionBits) | version;

    public string? ChunkKey(long index, ulong entry) =>
        entry == 0 ? null : S3Keys.Chunk(Lineage[(int)(entry >> VersionBits)].Uuid, index, entry & VersionMask);

    public VolumeInfo ToVolumeInfo() =>
        new(Id, Name, SizeBytes, CreatedUtc, SourceKind is { } k && SourceId is not null ? new VolumeSource(k, SourceId) : null);

    public SnapshotInfo ToSnapshotInfo() => new(Id, Name, SourceVolumeId ?? "", SizeBytes, CreatedUtc, ReadyToUse: true);

    public byte[] Serialize() => JsonSerializer.SerializeToUtf8Bytes(this, AtomicFile.Json);

    public static S3Manifest Parse(byte[] json, string key)
    {
        var manifest = JsonSerializer.Deserialize<S3Manifest>(json, AtomicFile.Json)
            ?? throw new InvalidDataException($"manifest '{key}' is empty");
        if (manifest.Format != CurrentFormat || manifest.ChunkSize <= 0 || manifest.SizeBytes <= 0)
        {
            throw new InvalidDataException($"manifest '{key}' has format {manifest.Format}, chunk size {manifest.ChunkSize}, size {manifest.SizeBytes}: not readable by this version");
        }

        return manifest;
    }
}
