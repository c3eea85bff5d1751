using UblkCsi.Stores;
using UblkCsi.Stores.Rpc;

namespace UblkCsi.BlockStoreServer;

/// <summary>Reads the shared token: the first line of a file, surrounding whitespace removed.</summary>
internal static class TokenFile
{
    /// <summary>Group or others may read the file: worth a warning, since the token grants full access.</summary>
    public static bool IsReadableByOthers(string path) =>
        !OperatingSystem.IsWindows() && (File.GetUnixFileMode(path) & (UnixFileMode.GroupRead | UnixFileMode.OtherRead)) != 0;

    /// <exception cref="IOException">Unreadable or not a valid token (the message never quotes it).</exception>
    public static string Read(string path)
    {
        string? line;
        try
        {
            using var reader = new StreamReader(path);
            line = reader.ReadLine();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new IOException($"cannot read the token file '{path}': {e.Message}", e);
        }

        var token = line?.Trim() ?? "";
        try
        {
            RpcStoreProvider.CheckToken(token, "--token-file");
        }
        catch (StoreParameterException e)
        {
            throw new IOException($"token file '{path}': {e.Message}", e);
        }

        return token;
    }
}
