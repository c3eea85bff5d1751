using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using UblkCsi.Stores;

namespace UblkCsi.BlockStoreServer.Service.Nbd;

/// <summary>
/// The export names of the NBD data path. NBD has no credentials of its own, so the name a client asks
/// for is a ticket: OpenVolume (an authenticated call) issues it, and it names the volume, the writer
/// generation the open took, and whether it may write, sealed with an HMAC under a key only this server
/// holds. A connection that presents it gets exactly that open, no more; a guessed or altered name
/// is an unknown export. The key is kept in the store's root, so tickets outlive a server restart
/// and clients reconnect to the restarted server with the names they have.
/// </summary>
/// <remarks>
/// The form is <c>VOLUME:GENERATION:rw|ro:MAC</c>, then the client appends <c>#SLOT</c> per connection
/// (<see cref="NbdDataSlots"/>). Volume IDs hold only [A-Za-z0-9._-], so the separators are unambiguous.
/// </remarks>
internal sealed class NbdDataTickets
{
    private const int KeyBytes = 32;
    private const int MacChars = 43; // 32 bytes, base64url without padding

    private readonly byte[] _key;

    private NbdDataTickets(byte[] key) => _key = key;

    /// <summary>Tickets under a fresh key that lives as long as this object (tests, in-process servers).</summary>
    public static NbdDataTickets Ephemeral() => new(RandomNumberGenerator.GetBytes(KeyBytes));

    /// <summary>Loads the key from <paramref name="keyFile"/>, creating it (mode 0600) on first use.</summary>
    /// <exception cref="IOException">The file cannot be read or created, or holds no valid key.</exception>
    public static NbdDataTickets LoadOrCreate(string keyFile)
    {
        if (!File.Exists(keyFile))
        {
            var fresh = RandomNumberGenerator.GetBytes(KeyBytes);
            var temporary = $"{keyFile}.tmp{Environment.ProcessId}";
            var create = new FileStreamOptions { Mode = FileMode.Create, Access = FileAccess.Write };
            if (!OperatingSystem.IsWindows())
            {
                create.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
            }

            using (var stream = new FileStream(temporary, create))
            {
                stream.Write(fresh);
                stream.Flush(flushToDisk: true);
            }

            // Two servers on one root must agree on one key: the first rename wins, the other reads it.
            try
            {
                File.Move(temporary, keyFile, overwrite: false);
            }
            catch (IOException) when (File.Exists(keyFile))
            {
                File.Delete(temporary);
            }
        }

        var key = File.ReadAllBytes(keyFile);
        if (key.Length != KeyBytes)
        {
            throw new IOException($"'{keyFile}' holds {key.Length} bytes, not a {KeyBytes}-byte ticket key; remove it to have a new one made (clients then reopen their volumes)");
        }

        return new NbdDataTickets(key);
    }

    /// <summary>The ticket for an open of <paramref name="volumeId"/>.</summary>
    public string Issue(string volumeId, ulong writerGeneration, bool readWrite)
    {
        var body = $"{volumeId}:{writerGeneration.ToString(CultureInfo.InvariantCulture)}:{(readWrite ? "rw" : "ro")}";
        return body + ":" + Mac(body);
    }

    /// <summary>True when <paramref name="ticket"/> is one this server issued; then what it grants.</summary>
    public bool TryRead(string ticket, out string volumeId, out ulong writerGeneration, out bool readWrite)
    {
        volumeId = "";
        writerGeneration = 0;
        readWrite = false;
        var macAt = ticket.LastIndexOf(':');
        if (macAt < 0 || ticket.Length - macAt - 1 != MacChars)
        {
            return false;
        }

        var body = ticket[..macAt];
        var expected = Encoding.ASCII.GetBytes(Mac(body));
        var given = Encoding.ASCII.GetBytes(ticket[(macAt + 1)..]);
        if (!CryptographicOperations.FixedTimeEquals(expected, given))
        {
            return false;
        }

        var parts = body.Split(':');
        if (parts.Length != 3 || !VolumeIds.IsValidId(parts[0])
            || !ulong.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out writerGeneration)
            || parts[2] is not ("rw" or "ro"))
        {
            return false;
        }

        volumeId = parts[0];
        readWrite = parts[2] == "rw";
        return true;
    }

    private string Mac(string body) =>
        Convert.ToBase64String(HMACSHA256.HashData(_key, Encoding.UTF8.GetBytes(body))).TrimEnd('=').Replace('+', '-').Replace('/', '_');
}
