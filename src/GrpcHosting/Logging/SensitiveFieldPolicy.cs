using System.Collections.Concurrent;
using Google.Protobuf;
using Google.Protobuf.Reflection;

namespace UblkCsi.GrpcHosting.Logging;

/// <summary>
/// Decides which protobuf fields must never appear in logs. A field is sensitive when any of the
/// registered boolean <see cref="FieldOptions"/> extensions is set on it, e.g. CSI's
/// <c>csi_secret</c> or the block-store protocol's own credential marker.
/// </summary>
public sealed class SensitiveFieldPolicy
{
    private readonly Extension<FieldOptions, bool>[] _markers;
    private readonly ConcurrentDictionary<FieldDescriptor, bool> _cache = new();

    /// <summary>Creates a policy that treats fields carrying any of <paramref name="markers"/> as sensitive.</summary>
    /// <param name="markers">Boolean field-option extensions from generated code (e.g. <c>CsiExtensions.CsiSecret</c>).</param>
    public SensitiveFieldPolicy(params IEnumerable<Extension<FieldOptions, bool>> markers)
    {
        ArgumentNullException.ThrowIfNull(markers);
        _markers = markers.ToArray();
        foreach (var marker in _markers)
        {
            ArgumentNullException.ThrowIfNull(marker, nameof(markers));
        }
    }

    /// <summary>A policy with no markers: nothing is redacted.</summary>
    public static SensitiveFieldPolicy None { get; } = new();

    /// <summary>True when <paramref name="field"/> carries one of the markers set to true.</summary>
    public bool IsSensitive(FieldDescriptor field) =>
        _markers.Length != 0 && _cache.GetOrAdd(field, static (f, markers) => HasMarker(f, markers), _markers);

    private static bool HasMarker(FieldDescriptor field, Extension<FieldOptions, bool>[] markers)
    {
        var options = field.GetOptions();
        if (options is null)
        {
            return false;
        }

        foreach (var marker in markers)
        {
            if (options.GetExtension(marker))
            {
                return true;
            }
        }

        return false;
    }
}
