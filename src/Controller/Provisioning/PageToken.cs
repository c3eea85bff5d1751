namespace UblkCsi.Controller.Provisioning;

/// <summary>
/// List paging. Entries are ordered by their CSI ID and a token names the last ID of the previous
/// page, so a page boundary survives creations and deletions between calls (no index shifts).
/// </summary>
public static class PageToken
{
    private const string Prefix = "after:";

    /// <summary>Returns one page of <paramref name="ordered"/> (sorted by <paramref name="idOf"/>, ordinal) and the next token.</summary>
    public static (IReadOnlyList<T> Page, string NextToken) Slice<T>(IReadOnlyList<T> ordered, Func<T, string> idOf, int maxEntries, string startingToken)
    {
        if (maxEntries < 0)
        {
            throw CsiErrors.InvalidArgument($"max_entries must not be negative, got {maxEntries}");
        }

        var start = 0;
        if (startingToken.Length > 0)
        {
            if (!startingToken.StartsWith(Prefix, StringComparison.Ordinal) || startingToken.Length == Prefix.Length)
            {
                throw CsiErrors.Aborted($"starting_token '{startingToken}' was not issued by this driver");
            }

            var after = startingToken[Prefix.Length..];
            while (start < ordered.Count && string.CompareOrdinal(idOf(ordered[start]), after) <= 0)
            {
                start++;
            }
        }

        var count = maxEntries == 0 ? ordered.Count - start : Math.Min(maxEntries, ordered.Count - start);
        var page = ordered.Skip(start).Take(count).ToList();
        var next = start + count < ordered.Count && page.Count > 0 ? Prefix + idOf(page[^1]) : "";
        return (page, next);
    }
}
