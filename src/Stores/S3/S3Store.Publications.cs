using System.Text.Json;

namespace UblkCsi.Stores.S3;

/// <summary>
/// Publication records as <c>publications/ID.json</c>, an object of their own: the writer of an
/// attached volume rewrites its manifest on every flush and must never race the controller over it.
/// </summary>
public sealed partial class S3Store : IVolumePublications
{
    private static readonly JsonSerializerOptions PublicationsJson = new(JsonSerializerDefaults.Web);

    public async Task<IReadOnlyList<VolumePublication>> GetPublicationsAsync(string volumeId, CancellationToken cancellationToken = default)
    {
        await RequireVolumeAsync(volumeId, cancellationToken).ConfigureAwait(false);
        var bytes = await Bucket.GetAsync(S3Keys.Publications(volumeId), cancellationToken).ConfigureAwait(false);
        return bytes is null ? [] : JsonSerializer.Deserialize<S3PublicationsRecord>(bytes, PublicationsJson)?.Nodes ?? [];
    }

    public async Task SetPublicationsAsync(string volumeId, IReadOnlyList<VolumePublication> publications, CancellationToken cancellationToken = default)
    {
        await RequireVolumeAsync(volumeId, cancellationToken).ConfigureAwait(false);
        if (publications.Count == 0)
        {
            await Bucket.DeleteAsync([S3Keys.Publications(volumeId)], cancellationToken).ConfigureAwait(false);
            return;
        }

        var record = new S3PublicationsRecord(1, publications.ToArray());
        await Bucket.PutAsync(S3Keys.Publications(volumeId), JsonSerializer.SerializeToUtf8Bytes(record, PublicationsJson), cancellationToken).ConfigureAwait(false);
    }

    private async Task RequireVolumeAsync(string volumeId, CancellationToken cancellationToken)
    {
        VolumeIds.Validate(volumeId);
        _ = await ReadManifestAsync(S3Keys.Volume(volumeId), cancellationToken).ConfigureAwait(false)
            ?? throw new StoreNotFoundException(StoreObjectKind.Volume, volumeId);
    }
}

/// <summary>The JSON body of a publications object.</summary>
internal sealed record S3PublicationsRecord(int Format, VolumePublication[] Nodes);
