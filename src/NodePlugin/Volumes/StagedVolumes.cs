using System.Collections.Concurrent;
using UblkCsi.NodePlugin.Host;

namespace UblkCsi.NodePlugin.Volumes;

/// <summary>The volumes this process serves, by CSI volume_id.</summary>
public sealed class StagedVolumes
{
    private readonly ConcurrentDictionary<string, StagedVolume> _volumes = new(StringComparer.Ordinal);

    /// <summary>Number of staged volumes.</summary>
    public int Count => _volumes.Count;

    /// <summary>A snapshot of every staged volume.</summary>
    public IReadOnlyList<StagedVolume> All => _volumes.Values.ToArray();

    /// <summary>The staged volume, or null.</summary>
    public StagedVolume? Find(string volumeId) => _volumes.GetValueOrDefault(volumeId);

    /// <summary>Adds a volume that is now served.</summary>
    public void Add(StagedVolume volume)
    {
        if (!_volumes.TryAdd(volume.Record.VolumeId, volume))
        {
            throw new InvalidOperationException($"volume {volume.Record.VolumeId} is already registered");
        }
    }

    /// <summary>Forgets a volume.</summary>
    public void Remove(string volumeId) => _volumes.TryRemove(volumeId, out _);

    /// <summary>
    /// True when <paramref name="mount"/> shows this volume: its filesystem (the staging mount and its
    /// bind mounts name /dev/ublkbN as source) or its device node bound onto a file (block publish).
    /// </summary>
    public static bool Shows(MountEntry mount, StagedVolume volume) =>
        mount.Source == volume.Device.Path
        || (mount.Root == "/" + Path.GetFileName(volume.Device.Path) && mount.FsType == "devtmpfs");
}
