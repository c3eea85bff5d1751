using System.Globalization;

namespace UblkCsi.GrpcHosting.Wire;

/// <summary>grpc-status header values, formatted once.</summary>
internal static class GrpcStatusValues
{
    private static readonly string[] Values = Enumerable.Range(0, 17).Select(i => i.ToString(CultureInfo.InvariantCulture)).ToArray();

    public static string Ok => Values[0];

    public static string Format(StatusCode code) =>
        (uint)code < (uint)Values.Length ? Values[(int)code] : ((int)code).ToString(CultureInfo.InvariantCulture);

    /// <summary>Parses grpc-status; an absent or malformed value is UNKNOWN, as the gRPC spec asks.</summary>
    public static StatusCode Parse(string? value) =>
        int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var code) ? (StatusCode)code : StatusCode.Unknown;
}
