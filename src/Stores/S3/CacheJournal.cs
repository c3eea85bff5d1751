using System.Buffers.Binary;
using System.Text;
using Microsoft.Win32.SafeHandles;
using UblkCsi.Stores.Internal;

namespace UblkCsi.Stores.S3;

/// <summary>
/// Lets a restarted process take over the write-back cache of a volume its predecessor was writing
/// (the node plugin is restarted under live ublk devices, and the filesystem on top trusts that
/// every write it saw complete is still there). Next to <c>UUID.cache</c> lives <c>UUID.state</c>:
/// a header naming the volume incarnation, the kernel boot and the manifest generation the cache
/// builds on, then one byte per chunk, set before a write to the chunk completes and cleared once a
/// manifest naming the chunk's uploaded content is in the bucket.
/// </summary>
/// <remarks>
/// A cache is adopted only by the same kernel boot (after a reboot the page cache that held the
/// cache file's latest bytes is gone, so a marked chunk could hold holes where flushed data was),
/// only if no other writer committed in between (the manifest's writer generation is the one the
/// header names), and only with the same volume size. Otherwise it is discarded: then only
/// unflushed writes are lost, which a volatile write cache is allowed to lose.
/// </remarks>
internal sealed class CacheJournal : IDisposable
{
    private const int HeaderBytes = 128;
    private const ulong Magic = 0x3143_3353_4B4C_4255; // "UBLKS3C1" little-endian
    private const int UuidOffset = 8, UuidLength = 32;
    private const int BootOffset = 40, BootLength = 36;
    private const int PendingOffset = 80, CommittedOffset = 88;

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
    /// Opens the writer's cache and journal for a volume, adopting a predecessor's cache when that is
    /// safe. Returns the chunks the adopted cache holds unflushed data for (empty when fresh).
    /// </summary>
    /// <exception cref="StoreException">FailedPrecondition: another process on this node has the volume open.</exception>
    public static (SafeFileHandle Cache, string CachePath, CacheJournal Journal, List<long> DirtyChunks) OpenForWriter(string directory, S3Manifest manifest)
    {
        var cachePath = Path.Combine(directory, manifest.Uuid + ".cache");
        var statePath = Path.Combine(directory, manifest.Uuid + ".state");
        SafeFileHandle cache;
        try
        {
            // FileShare.None takes an exclusive flock: a second writer on this node is refused.
            cache = File.OpenHandle(cachePath, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        }
        catch (IOException e) when (File.Exists(cachePath))
        {
            throw new StoreException(StoreErrorCode.FailedPrecondition, $"volume '{manifest.Id}' is already open for writing by another process on this node", e);
        }

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
                journal.WriteHeader(manifest.Uuid!, manifest.WriterGeneration);
                dirty = [];
            }

            return (cache, cachePath, journal, dirty);
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

    /// <summary>Before a manifest of generation <paramref name="generation"/> is written.</summary>
    public void SetPending(ulong generation) => WriteGeneration(PendingOffset, generation);

    /// <summary>After the manifest of generation <paramref name="generation"/> is in the bucket.</summary>
    public void SetCommitted(ulong generation) => WriteGeneration(CommittedOffset, generation);

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

        var pending = BinaryPrimitives.ReadUInt64LittleEndian(header[PendingOffset..]);
        var committed = BinaryPrimitives.ReadUInt64LittleEndian(header[CommittedOffset..]);
        if (manifest.WriterGeneration != committed && manifest.WriterGeneration != pending)
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

        // The predecessor's last pending generation may or may not have landed; from now on the
        // bucket's generation is the base.
        WriteGeneration(CommittedOffset, manifest.WriterGeneration);
        WriteGeneration(PendingOffset, manifest.WriterGeneration);
        return dirty;
    }

    private void WriteHeader(string uuid, ulong generation)
    {
        Span<byte> header = stackalloc byte[HeaderBytes];
        header.Clear();
        BinaryPrimitives.WriteUInt64LittleEndian(header, Magic);
        Encoding.ASCII.GetBytes(uuid, header.Slice(UuidOffset, UuidLength));
        var boot = BootId();
        Encoding.ASCII.GetBytes(boot.AsSpan(0, Math.Min(boot.Length, BootLength)), header.Slice(BootOffset, BootLength));
        BinaryPrimitives.WriteUInt64LittleEndian(header[PendingOffset..], generation);
        BinaryPrimitives.WriteUInt64LittleEndian(header[CommittedOffset..], generation);
        RandomAccess.Write(_state, header, 0);
    }

    private void WriteGeneration(int offset, ulong generation)
    {
        Span<byte> value = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(value, generation);
        RandomAccess.Write(_state, value, offset);
    }
}
