using System.Net;
using System.Net.Sockets;

namespace UblkCsi.BlockStoreServer.Tests.Support;

/// <summary>Scratch directories and free ports for one test.</summary>
public static class TestPaths
{
    /// <summary>A new empty directory under the temp root.</summary>
    public static string NewDirectory(string purpose) => Directory.CreateTempSubdirectory($"ublk-bss-{purpose}-").FullName;

    /// <summary>A loopback TCP port that was free a moment ago (for servers that must restart on the same port).</summary>
    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    /// <summary>Writes a token file readable only by its owner.</summary>
    public static string WriteTokenFile(string directory, string token)
    {
        var path = Path.Combine(directory, "token");
        File.WriteAllText(path, token + "\n");
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        return path;
    }
}
