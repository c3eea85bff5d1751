using System.Buffers.Binary;
using System.Text;
using Microsoft.Win32.SafeHandles;
using UblkCsi.Stores.Internal;

namespace UblkCsi.Stores.S3;

/// <summary>
/// Lets a restarted process take over the write-back cache of a volume its predecessor was writing
/// (the node plugin is restarted under live ublk devices, and the filesystem on top trusts that
/// every write it saw complete is still there). Next to <c>UUID.cache</c> lives <c>UUID.state</c>:
/// a header naming the volume incarnation, the kernel boot and the commit (writer generation and
/// journal sequence, pending and committed) the cache builds on, then one byte per chunk, set before
/// a write to the chunk completes and cleared once a committed journal names the chunk's uploaded content.
/// </summary>
/// <remarks>
/// A cache is adopted only by the same kernel boot (after a reboot the page cache that held the
/// cache file's latest bytes is gone, so a marked chunk could hold holes where flushed data was),
/// only if no other writer committed in between (the volume's state in the bucket is the commit the
/// header names), and only with the same volume size. The adopter takes a new writer generation
/// (the lease) and keeps the marked chunks dirty. Otherwise it is discarded: then only
/// unflushed writes are lost, which a volatile write cache is allowed to lose.
/// </remarks>
internal sealed class CacheJournal : IDisposable
{
    private const int HeaderBytes = 128;
    private const ulong Magic = 0x3243_3353_4B4C_4255; // "UBLKS3C2" little-endian
    private const int UuidOffset = 8, UuidLength = 32;
    private const int BootOffset = 40, BootLength = 36;
    private const int PendingOffset = 80, CommittedOffset = 96; // each: generation, then journal sequence

    private static readonly byte[] Set = [1];
    private static readonly byte[] Clear = [0];

    private readonly SafeFileHandle _state;

    private CacheJournal(SafeFileHandle state, string statePath)
    {
        _state = state;
        StatePath = statePath;
    }

    /// <summary>Where the kernel boot ID comes from (tests replace it to simulate a reboot).</summary>
    internal static Func<string> BootId { get; set; } = () => File.ReadAllText("/proc/sys/kernel/random/boot_id").Trim();

    public string StatePath { get; }

    /// <summary>
    /// Opens and locks the writer's cache file, before the writer lease is taken: a second writer on
    /// this node is refused without fencing the first.
    /// </summary>
    /// <exception cref="StoreException">FailedPrecondition: another process on this node has the volume open.</exception>
    public static (SafeFileHandle Cache, string CachePath) LockCache(string directory, S3Manifest manifest)
    {
        var cachePath = Path.Combine(directory, manifest.Uuid + ".cache");
        try
        {
            // FileShare.None takes an exclusive flock: a second writer on this node is refused.
            return (File.OpenHandle(cachePath, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None), cachePath);
        }
        catch (IOException e) when (File.Exists(cachePath))
        {
            throw new StoreException(StoreErrorCode.FailedPrecondition, $"volume '{manifest.Id}' is already open for writing by another process on this node", e);
        }
    }

    /// <summary>
    /// Opens the journal beside a locked cache (<see cref="LockCache"/>), adopting a predecessor's
    /// cache when that is safe for the volume's state <paramref name="manifest"/>. Returns the chunks
    /// the adopted cache holds unflushed data for (empty when fresh). Disposes the cache on failure.
    /// </summary>
    public static (CacheJournal Journal, List<long> DirtyChunks) OpenForWriter(string directory, SafeFileHandle cache, S3Manifest manifest)
    {
        var statePath = Path.Combine(directory, manifest.Uuid + ".state");
        SafeFileHandle? state = null;
        try
        {
            state = File.OpenHandle(statePath, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
            var journal = new CacheJournal(state, statePath);
            var chunks = manifest.ChunkCount;
            var dirty = journal.TryAdopt(cache, manifest, chunks);
            if (dirty is null)
            {
                // Start clean: empty the cache file (holes read as zeros) and write a fresh header.
                RandomAccess.SetLength(cache, 0);
                RandomAccess.SetLength(cache, manifest.SizeBytes);
                RandomAccess.SetLength(state, 0);
                RandomAccess.SetLength(state, HeaderBytes + chunks);
                journal.WriteHeader(manifest.Uuid!, manifest.WriterGeneration, manifest.JournalSeq);
                dirty = [];
            }

            return (journal, dirty);
        }
        catch
        {
            state?.Dispose();
            cache.Dispose();
            throw;
        }
    }

    /// <summary>Records that a chunk holds content the last manifest does not name (or no longer does).</summary>
    public void Mark(long index, bool unflushed) =>
        RandomAccess.Write(_state, unflushed ? Set : Clear, HeaderBytes + index);

    /// <summary>Before journal <paramref name="seq"/> (0: the base) of <paramref name="generation"/> is written.</summary>
    public void SetPending(ulong generation, ulong seq) => WriteCommit(PendingOffset, generation, seq);

    /// <summary>After journal <paramref name="seq"/> (0: the base) of <paramref name="generation"/> is in the bucket.</summary>
    public void SetCommitted(ulong generation, ulong seq) => WriteCommit(CommittedOffset, generation, seq);

    public void Dispose() => _state.Dispose();

    private List<long>? TryAdopt(SafeFileHandle cache, S3Manifest manifest, long chunks)
    {
        if (RandomAccess.GetLength(_state) != HeaderBytes + chunks || RandomAccess.GetLength(cache) != manifest.SizeBytes)
        {
            return null;
        }

        Span<byte> header = stackalloc byte[HeaderBytes];
        if (RandomAccess.Read(_state, header, 0) != HeaderBytes
            || BinaryPrimitives.ReadUInt64LittleEndian(header) != Magic
            || Encoding.ASCII.GetString(header.Slice(UuidOffset, UuidLength)) != manifest.Uuid
            || Encoding.ASCII.GetString(header.Slice(BootOffset, BootLength)).TrimEnd('\0') != BootId())
        {
            return null;
        }

        var bucket = (manifest.WriterGeneration, manifest.JournalSeq);
        if (bucket != ReadCommit(header, PendingOffset) && bucket != ReadCommit(header, CommittedOffset))
        {
            return null; // another writer committed since: this cache is stale
        }

        var marks = new byte[chunks];
        RandomAccess.Read(_state, marks, HeaderBytes);
        var dirty = new List<long>();
        for (long i = 0; i < chunks; i++)
        {
            if (marks[i] != 0)
            {
                dirty.Add(i);
            }
            else
            {
                // Clean chunks come back from the bucket on demand; their old bytes must not be read.
                var start = i * manifest.ChunkSize;
                var errno = LinuxFile.PunchHole(cache, start, Math.Min(manifest.ChunkSize, manifest.SizeBytes - start));
                if (errno != 0)
                {
                    return null;
                }
            }
        }

        // The predecessor's last pending commit may or may not have landed; from now on the
        // bucket's state is the base.
        WriteCommit(CommittedOffset, manifest.WriterGeneration, manifest.JournalSeq);
        WriteCommit(PendingOffset, manifest.WriterGeneration, manifest.JournalSeq);
        return dirty;
    }

    private static (ulong Generation, ulong Seq) ReadCommit(ReadOnlySpan<byte> header, int offset) =>
        (BinaryPrimitives.ReadUInt64LittleEndian(header[offset..]), BinaryPrimitives.ReadUInt64LittleEndian(header[(offset + 8)..]));

    private void WriteHeader(string uuid, ulong generation, ulong seq)
    {
        Span<byte> header = stackalloc byte[HeaderBytes];
        header.Clear();
        BinaryPrimitives.WriteUInt64LittleEndian(header, Magic);
        Encoding.ASCII.GetBytes(uuid, header.Slice(UuidOffset, UuidLength));
        var boot = BootId();
        Encoding.ASCII.GetBytes(boot.AsSpan(0, Math.Min(boot.Length, BootLength)), header.Slice(BootOffset, BootLength));
        foreach (var offset in (ReadOnlySpan<int>)[PendingOffset, CommittedOffset])
        {
            BinaryPrimitives.WriteUInt64LittleEndian(header[offset..], generation);
            BinaryPrimitives.WriteUInt64LittleEndian(header[(offset + 8)..], seq);
        }

        RandomAccess.Write(_state, header, 0);
    }

    private void WriteCommit(int offset, ulong generation, ulong seq)
    {
        Span<byte> value = stackalloc byte[16];
        BinaryPrimitives.WriteUInt64LittleEndian(value, generation);
        BinaryPrimitives.WriteUInt64LittleEndian(value[8..], seq);
        RandomAccess.Write(_state, value, offset);
    }
}
