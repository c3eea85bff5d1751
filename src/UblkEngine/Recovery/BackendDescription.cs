using System.Text.RegularExpressions;

namespace UblkCsi.Engine.Recovery;

/// <summary>Keeps credentials out of backend descriptions before they are stored or printed.</summary>
public static partial class BackendDescription
{
    /// <summary>
    /// Removes <c>user:password@</c> from URIs and blanks query parameters whose names suggest a
    /// credential (secret, password, token, credential, signature, access key).
    /// </summary>
    public static string Redact(string description)
    {
        ArgumentNullException.ThrowIfNull(description);
        var withoutUserInfo = UserInfo().Replace(description, "$1");
        return SecretParameter().Replace(withoutUserInfo, "$1=REDACTED");
    }

    [GeneratedRegex(@"^([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@?#]*@")]
    private static partial Regex UserInfo();

    [GeneratedRegex(@"([?&;][^=&;#]*(?:secret|password|passwd|token|credential|signature|access[_-]?key)[^=&;#]*)=[^&;#]*", RegexOptions.IgnoreCase)]
    private static partial Regex SecretParameter();
}
