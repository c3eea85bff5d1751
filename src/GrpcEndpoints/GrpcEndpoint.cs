using System.Globalization;
using System.Net;
using System.Text;

namespace UblkCsi.GrpcEndpoints;

/// <summary>How a <see cref="GrpcEndpoint"/> is reached.</summary>
public enum GrpcEndpointKind
{
    /// <summary>A unix domain socket at an absolute path.</summary>
    Unix,

    /// <summary>A TCP host and port.</summary>
    Tcp,
}

/// <summary>
/// A listen or connect address: <c>unix:///absolute/path.sock</c> (also <c>unix:/absolute/path.sock</c>)
/// or <c>tcp://host:port</c>, the forms CSI drivers take in --endpoint / CSI_ENDPOINT.
/// </summary>
public sealed record GrpcEndpoint
{
    /// <summary>sun_path holds 108 bytes including the terminating NUL.</summary>
    public const int MaxUnixPathBytes = 107;

    private const string Expected = "expected unix:///absolute/path.sock or tcp://host:port";

    private GrpcEndpoint(GrpcEndpointKind kind, string? unixPath, string? host, int port)
    {
        Kind = kind;
        UnixPath = unixPath;
        Host = host;
        Port = port;
    }

    /// <summary>Unix socket or TCP.</summary>
    public GrpcEndpointKind Kind { get; }

    /// <summary>The absolute socket path for <see cref="GrpcEndpointKind.Unix"/>, else null.</summary>
    public string? UnixPath { get; }

    /// <summary>The host name or IP address for <see cref="GrpcEndpointKind.Tcp"/> (IPv6 without brackets), else null.</summary>
    public string? Host { get; }

    /// <summary>The TCP port (0 asks the OS for a free one when listening), else 0.</summary>
    public int Port { get; }

    /// <summary>A unix socket endpoint; the path is validated like a parsed one.</summary>
    public static GrpcEndpoint Unix(string path) => Parse("unix://" + path);

    /// <summary>A TCP endpoint; host and port are validated like parsed ones.</summary>
    public static GrpcEndpoint Tcp(string host, int port) =>
        Parse($"tcp://{(host.Contains(':', StringComparison.Ordinal) ? "[" + host + "]" : host)}:{port.ToString(CultureInfo.InvariantCulture)}");

    /// <summary>Parses an endpoint; throws <see cref="FormatException"/> with a message naming what is wrong.</summary>
    public static GrpcEndpoint Parse(string value) =>
        TryParse(value, out var endpoint, out var error) ? endpoint : throw new FormatException(error);

    /// <summary>Parses an endpoint; on failure <paramref name="error"/> says what is wrong and what is expected.</summary>
    public static bool TryParse(string? value, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out GrpcEndpoint? endpoint, [System.Diagnostics.CodeAnalysis.NotNullWhen(false)] out string? error)
    {
        endpoint = null;
        if (string.IsNullOrWhiteSpace(value))
        {
            error = $"endpoint is empty; {Expected}";
            return false;
        }

        if (value.StartsWith("unix:", StringComparison.Ordinal))
        {
            var path = value.StartsWith("unix://", StringComparison.Ordinal) ? value["unix://".Length..] : value["unix:".Length..];
            return TryUnix(value, path, out endpoint, out error);
        }

        if (value.StartsWith("tcp://", StringComparison.Ordinal))
        {
            return TryTcp(value, value["tcp://".Length..], out endpoint, out error);
        }

        error = $"endpoint '{value}' has an unsupported scheme; {Expected}";
        return false;
    }

    /// <summary>The canonical text form, parseable by <see cref="Parse"/>.</summary>
    public override string ToString() => Kind == GrpcEndpointKind.Unix
        ? "unix://" + UnixPath
        : $"tcp://{(Host!.Contains(':', StringComparison.Ordinal) ? "[" + Host + "]" : Host)}:{Port.ToString(CultureInfo.InvariantCulture)}";

    private static bool TryUnix(string value, string path, out GrpcEndpoint? endpoint, out string? error)
    {
        endpoint = null;
        if (!path.StartsWith('/'))
        {
            error = $"endpoint '{value}' must name an absolute socket path; {Expected}";
            return false;
        }

        if (path.EndsWith('/') || path.Contains('\0', StringComparison.Ordinal))
        {
            error = $"endpoint '{value}' does not name a socket file; {Expected}";
            return false;
        }

        if (path.Split('/').Any(segment => segment is "." or ".."))
        {
            error = $"endpoint '{value}' must not contain '.' or '..' path segments";
            return false;
        }

        if (Encoding.UTF8.GetByteCount(path) > MaxUnixPathBytes)
        {
            error = $"endpoint '{value}': unix socket paths are limited to {MaxUnixPathBytes} bytes";
            return false;
        }

        endpoint = new GrpcEndpoint(GrpcEndpointKind.Unix, path, null, 0);
        error = null;
        return true;
    }

    private static bool TryTcp(string value, string authority, out GrpcEndpoint? endpoint, out string? error)
    {
        endpoint = null;
        error = $"endpoint '{value}' is not a valid tcp address; {Expected}";
        string host;
        string portText;
        if (authority.StartsWith('['))
        {
            var close = authority.IndexOf(']', StringComparison.Ordinal);
            if (close < 0 || close + 1 >= authority.Length || authority[close + 1] != ':')
            {
                return false;
            }

            host = authority[1..close];
            portText = authority[(close + 2)..];
            if (!IPAddress.TryParse(host, out var v6) || v6.AddressFamily != System.Net.Sockets.AddressFamily.InterNetworkV6)
            {
                return false;
            }
        }
        else
        {
            var colon = authority.LastIndexOf(':');
            if (colon <= 0 || authority.IndexOf(':', StringComparison.Ordinal) != colon)
            {
                return false;
            }

            host = authority[..colon];
            portText = authority[(colon + 1)..];
            if (!IsHostName(host))
            {
                return false;
            }
        }

        if (!int.TryParse(portText, NumberStyles.None, CultureInfo.InvariantCulture, out var port) || port > 65535)
        {
            error = $"endpoint '{value}' has an invalid port '{portText}' (allowed: 0-65535)";
            return false;
        }

        endpoint = new GrpcEndpoint(GrpcEndpointKind.Tcp, null, host, port);
        error = null;
        return true;
    }

    private static bool IsHostName(string host) =>
        host.Length is > 0 and <= 253
        && host.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '.' or '_')
        && !host.StartsWith('-') && !host.StartsWith('.');
}
