using System.Globalization;
using System.Text.Json;
using UblkCsi.Engine;
using UblkCsi.Stores.Internal;

namespace UblkCsi.Stores.S3;

/// <summary>What one flush committed: the map entries that changed since the writer's previous flush.</summary>
internal sealed class S3JournalDelta
{
    public ulong Generation { get; set; }

    public ulong Seq { get; set; }

    public long SizeBytes { get; set; }

    public ulong NextVersion { get; set; }

    public long[] Indexes { get; set; } = [];

    public ulong[] Entries { get; set; } = [];

    public byte[] Serialize() => JsonSerializer.SerializeToUtf8Bytes(this, AtomicFile.Json);

    public static S3JournalDelta Parse(byte[] json, string key) =>
        JsonSerializer.Deserialize<S3JournalDelta>(json, AtomicFile.Json) is { } delta && delta.Indexes.Length == delta.Entries.Length
            ? delta
            : throw new InvalidDataException($"journal object '{key}' is not readable");
}

/// <summary>
/// Writer generations of s3 volumes: the lease, the state a reader sees, the fencing check.
/// </summary>
/// <remarks>
/// <para><c>volumes/ID.json</c> is the control manifest (create, expand). A read-write open takes a
/// new generation G, higher than every generation in <c>writers/ID/</c> (and than a legacy manifest's),
/// by putting <c>G.lease</c>; only then does it read the state, so everything an older writer
/// committed before the lease appeared is in what G reads. G then writes <c>G/base.json</c> and, per
/// FLUSH, a small <c>G/journal-S.json</c> with the entries that changed; compaction folds journals
/// into a new base in the background. A reader takes the highest generation that has a base and
/// replays that generation's journals in order: an older writer's later journals are never read.</para>
/// <para>After each journal put, the writer lists <c>writers/ID/</c>: a lease above its own (or its own
/// missing: the volume was deleted) fails the flush with EIO and fences the writer, so it never
/// acknowledges a flush a newer generation may not have read, and never deletes a chunk version after
/// a newer generation may have read the map naming it. Chunk versions carry the generation in their
/// top bits (<see cref="VersionShift"/>), so two generations never upload the same object key.</para>
/// </remarks>
internal static class S3WriterLog
{
    /// <summary>Versions of generation G are G &lt;&lt; 28 .. (G + 1) &lt;&lt; 28 - 1 (268M uploads per open).</summary>
    public const int VersionShift = 28;

    /// <summary>Generations fit in the 48-bit version with <see cref="VersionShift"/> bits below them.</summary>
    public const ulong MaxGeneration = (1UL << (S3Manifest.VersionBits - VersionShift)) - 1;

    private const int ReadAttempts = 5;

    /// <summary>The generations found under a volume's writer prefix.</summary>
    public sealed class Listing
    {
        public SortedDictionary<ulong, Generation> Generations { get; } = [];

        public ulong Highest => Generations.Count == 0 ? 0 : Generations.Keys.Max();

        public Generation Get(ulong generation)
        {
            if (!Generations.TryGetValue(generation, out var g))
            {
                Generations[generation] = g = new Generation();
            }

            return g;
        }
    }

    public sealed class Generation
    {
        public bool HasLease;
        public bool HasBase;
        public List<ulong> Journals { get; } = [];
        public List<string> Keys { get; } = [];
    }

    public static async Task<Listing> ListAsync(S3Bucket bucket, string volumeId, CancellationToken cancellationToken)
    {
        var prefix = S3Keys.WriterPrefix(volumeId);
        var listing = new Listing();
        foreach (var key in await bucket.ListAsync(prefix, cancellationToken).ConfigureAwait(false))
        {
            var name = key.AsSpan(prefix.Length);
            if (name.Length < 16 || !ulong.TryParse(name[..16], NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var generation))
            {
                continue;
            }

            var g = listing.Get(generation);
            g.Keys.Add(key);
            var rest = name[16..];
            if (rest.SequenceEqual(".lease"))
            {
                g.HasLease = true;
            }
            else if (rest.SequenceEqual("/base.json"))
            {
                g.HasBase = true;
            }
            else if (rest.StartsWith("/journal-") && rest.EndsWith(".json")
                && ulong.TryParse(rest["/journal-".Length..^".json".Length], NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var seq))
            {
                g.Journals.Add(seq);
            }
        }

        foreach (var g in listing.Generations.Values)
        {
            g.Journals.Sort();
        }

        return listing;
    }

    /// <summary>
    /// The volume as its newest writer generation committed it: the control manifest with the chunk
    /// map of the highest generation's base plus its journals. Null when the volume does not exist.
    /// </summary>
    public static async Task<S3Manifest?> ReadStateAsync(S3Store store, string volumeId, CancellationToken cancellationToken) =>
        (await ReadSettledStateAsync(store, volumeId, cancellationToken).ConfigureAwait(false)).State;

    /// <summary>
    /// <see cref="ReadStateAsync"/>, and whether the state is settled: no newer lease exists whose
    /// writer has not written its base yet. Garbage collection needs a settled state: while an opener
    /// is between its lease and its base, the older writer may still commit journals superseding
    /// versions the opener read, and collecting by those journals would delete what the opener names.
    /// </summary>
    public static async Task<(S3Manifest? State, bool Settled)> ReadSettledStateAsync(S3Store store, string volumeId, CancellationToken cancellationToken)
    {
        for (var attempt = 1; ; attempt++)
        {
            var control = await store.ReadManifestAsync(S3Keys.Volume(volumeId), cancellationToken).ConfigureAwait(false);
            if (control is null)
            {
                return (null, true);
            }

            // Listed before the base is read: compaction writes a new base before it deletes the
            // journals the base covers, so every journal above the base we read is in this listing.
            var listing = await ListAsync(store.Bucket, volumeId, cancellationToken).ConfigureAwait(false);
            var state = await TryComposeAsync(store, control, listing, cancellationToken).ConfigureAwait(false);
            if (state is not null)
            {
                return (state, listing.Highest <= state.WriterGeneration);
            }

            if (attempt == ReadAttempts)
            {
                throw new StoreException(StoreErrorCode.Unavailable, $"volume '{volumeId}': its writer objects kept changing while being read; retry");
            }
        }
    }

    /// <summary>Null when an object vanished while reading (a concurrent compaction or cleanup): read again.</summary>
    private static async Task<S3Manifest?> TryComposeAsync(S3Store store, S3Manifest control, Listing listing, CancellationToken cancellationToken)
    {
        foreach (var (generation, g) in listing.Generations.Reverse())
        {
            if (!g.HasBase)
            {
                continue; // a lease whose writer never got to write its base holds nothing
            }

            var baseKey = S3Keys.WriterBase(control.Id, generation);
            var state = await store.ReadManifestAsync(baseKey, cancellationToken).ConfigureAwait(false);
            if (state is null)
            {
                return null;
            }

            if (state.Uuid != control.Uuid)
            {
                continue; // left over from an older incarnation of the name
            }

            var size = Math.Max(control.SizeBytes, state.SizeBytes);
            var entries = state.ReadEntries();
            Array.Resize(ref entries, (int)((size + state.ChunkSize - 1) / state.ChunkSize));
            var seq = state.JournalSeq;
            var nextVersion = state.NextVersion;
            foreach (var journal in g.Journals)
            {
                if (journal <= seq)
                {
                    continue;
                }

                if (journal != seq + 1)
                {
                    break; // journals are written in order, each retried until it lands: a gap ends the log
                }

                var key = S3Keys.Journal(control.Id, generation, journal);
                var bytes = await store.Bucket.GetAsync(key, cancellationToken).ConfigureAwait(false);
                if (bytes is null)
                {
                    return null;
                }

                var delta = S3JournalDelta.Parse(bytes, key);
                for (var i = 0; i < delta.Indexes.Length; i++)
                {
                    if (delta.Indexes[i] < entries.Length)
                    {
                        entries[delta.Indexes[i]] = delta.Entries[i];
                    }
                }

                nextVersion = Math.Max(nextVersion, delta.NextVersion);
                seq = journal;
            }

            var result = Clone(control);
            result.SizeBytes = size;
            result.NextVersion = Math.Max(nextVersion, control.NextVersion);
            result.WriterGeneration = generation;
            result.JournalSeq = seq;
            result.WriteEntries(entries);
            return result;
        }

        return control;
    }

    /// <summary>
    /// Takes the writer lease: a generation above every one in the bucket. Two openers racing for the
    /// same number both put it; the one whose nonce is not read back moves on to the next number, so
    /// the later one wins.
    /// </summary>
    public static async Task<ulong> TakeLeaseAsync(S3Bucket bucket, S3Manifest control, CancellationToken cancellationToken)
    {
        var listing = await ListAsync(bucket, control.Id, cancellationToken).ConfigureAwait(false);
        var generation = Math.Max(listing.Highest, control.WriterGeneration) + 1;
        for (var attempt = 0; attempt < ReadAttempts; attempt++, generation++)
        {
            if (generation > MaxGeneration)
            {
                throw new StoreException(StoreErrorCode.FailedPrecondition, $"volume '{control.Id}' has been opened for writing {MaxGeneration} times; clone it to continue");
            }

            var nonce = Guid.NewGuid().ToByteArray();
            var key = S3Keys.Lease(control.Id, generation);
            await bucket.PutAsync(key, nonce, cancellationToken).ConfigureAwait(false);
            if (await bucket.GetAsync(key, cancellationToken).ConfigureAwait(false) is { } stored && stored.AsSpan().SequenceEqual(nonce))
            {
                return generation;
            }
        }

        throw new StoreException(StoreErrorCode.Unavailable, $"volume '{control.Id}' is being opened for writing by others at the same time; retry");
    }

    /// <summary>Null while <paramref name="generation"/> is the newest writer, else why it is fenced.</summary>
    public static async Task<string?> CheckLeaseAsync(S3Bucket bucket, string volumeId, ulong generation, CancellationToken cancellationToken)
    {
        var listing = await ListAsync(bucket, volumeId, cancellationToken).ConfigureAwait(false);
        if (listing.Highest > generation)
        {
            return $"volume '{volumeId}' was opened for writing elsewhere (writer generation {listing.Highest} is newer than this writer's {generation}); this writer's later writes are refused";
        }

        return listing.Generations.TryGetValue(generation, out var own) && own.HasLease
            ? null
            : $"volume '{volumeId}' was deleted or recreated while open for writing; its writes cannot be committed";
    }

    /// <summary>Deletes every object of the generations below <paramref name="generation"/> (the fenced and the dead).</summary>
    public static async Task RemoveOlderGenerationsAsync(S3Bucket bucket, string volumeId, ulong generation, CancellationToken cancellationToken)
    {
        var listing = await ListAsync(bucket, volumeId, cancellationToken).ConfigureAwait(false);
        var keys = listing.Generations.Where(g => g.Key < generation).SelectMany(g => g.Value.Keys).ToList();
        if (keys.Count > 0)
        {
            await bucket.DeleteAsync(keys, cancellationToken).ConfigureAwait(false);
        }
    }

    public static S3Manifest Clone(S3Manifest m) => new()
    {
        Format = m.Format,
        Kind = m.Kind,
        Id = m.Id,
        Name = m.Name,
        SizeBytes = m.SizeBytes,
        ChunkSize = m.ChunkSize,
        CreatedUtc = m.CreatedUtc,
        SourceKind = m.SourceKind,
        SourceId = m.SourceId,
        SourceVolumeId = m.SourceVolumeId,
        Uuid = m.Uuid,
        Lineage = m.Lineage,
        NextVersion = m.NextVersion,
        WriterGeneration = m.WriterGeneration,
        JournalSeq = m.JournalSeq,
        Chunks = m.Chunks,
    };
}
