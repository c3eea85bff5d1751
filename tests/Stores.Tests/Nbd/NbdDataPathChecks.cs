using UblkCsi.Engine;

namespace UblkCsi.Stores.Tests.Nbd;

/// <summary>
/// The data-path half of the store contract (the conformance suite's data tests), for any opened NBD
/// volume: NBD has no volume management, so the control-path half does not apply. Data is checked
/// against a byte-array model.
/// </summary>
public static class NbdDataPathChecks
{
    private const int MiB = 1 << 20;

    /// <summary>Seeded random writes (some FUA), reads, discards, write-zeroes and flushes on the first <paramref name="size"/> bytes, checked against a model; returns the model.</summary>
    public static async Task<byte[]> RandomOperationsMatchModelAsync(IBlockBackend volume, int seed, long size, int operations = 200)
    {
        var model = new byte[size];
        await volume.ReadAsync(0, model);
        var random = new Random(seed);
        for (var i = 0; i < operations; i++)
        {
            var length = (random.Next(1, (int)Math.Min(768 * 1024, size) / 512) + 1) * 512;
            length = (int)Math.Min(length, size);
            var offset = random.NextInt64(0, ((size - length) / 512) + 1) * 512;
            switch (random.Next(10))
            {
                case < 4:
                    var data = Pattern(random.Next(), length);
                    await volume.WriteAsync(offset, data, random.Next(6) == 0 ? BlockWriteFlags.Fua : BlockWriteFlags.None);
                    data.CopyTo(model, offset);
                    break;
                case < 7:
                    var read = new byte[length];
                    await volume.ReadAsync(offset, read);
                    AssertSame(model.AsSpan((int)offset, length), read, $"op {i}: read at {offset}+{length}");
                    break;
                case 7:
                    await volume.DiscardAsync(offset, length);
                    Array.Clear(model, (int)offset, length);
                    break;
                case 8:
                    await volume.WriteZeroesAsync(offset, length);
                    Array.Clear(model, (int)offset, length);
                    break;
                default:
                    await volume.FlushAsync();
                    break;
            }
        }

        await volume.FlushAsync();
        await AssertContentAsync(volume, model, "after the random operations");
        return model;
    }

    /// <summary>Writers on many threads at once (several connections when the export allows), disjoint ranges, all land.</summary>
    public static async Task ConcurrentWritersAllLandAsync(IBlockBackend volume)
    {
        const int writers = 8, perWriter = 32, block = 64 * 1024;
        await Task.WhenAll(Enumerable.Range(0, writers).Select(w => Task.Run(async () =>
        {
            for (var i = 0; i < perWriter; i++)
            {
                await volume.WriteAsync((((long)w * perWriter) + i) * block, Pattern((w * 1000) + i, block));
            }
        })));
        await volume.FlushAsync();
        for (var w = 0; w < writers; w++)
        {
            for (var i = 0; i < perWriter; i++)
            {
                var read = new byte[block];
                await volume.ReadAsync((((long)w * perWriter) + i) * block, read);
                AssertSame(Pattern((w * 1000) + i, block), read, $"writer {w} block {i}");
            }
        }
    }

    /// <summary>Unwritten ranges read as zeros, discard and write-zeroes spare their neighbours, 1 MiB I/O, bounds and alignment.</summary>
    public static async Task EdgesAsync(IBlockBackend volume)
    {
        var size = volume.Info.SizeBytes;
        var buffer = new byte[MiB];
        buffer.AsSpan().Fill(0xEE);
        await volume.ReadAsync(size - MiB, buffer);
        Assert.False(buffer.AsSpan().ContainsAnyExcept((byte)0), "an unwritten range must read as zeros");

        var data = Pattern(11, 3 * 64 * 1024);
        await volume.WriteAsync(MiB, data);
        await volume.DiscardAsync(MiB + (64 * 1024), 64 * 1024);
        await volume.WriteAsync(2 * MiB, data);
        await volume.WriteZeroesAsync((2 * MiB) + 4096, 8192);
        var expected = (byte[])data.Clone();
        Array.Clear(expected, 64 * 1024, 64 * 1024);
        var read = new byte[data.Length];
        await volume.ReadAsync(MiB, read);
        AssertSame(expected, read, "discard of the middle 64 KiB");
        expected = (byte[])data.Clone();
        Array.Clear(expected, 4096, 8192);
        await volume.ReadAsync(2 * MiB, read);
        AssertSame(expected, read, "write-zeroes of 8 KiB");

        var unaligned = await Assert.ThrowsAsync<BlockBackendException>(async () => await volume.ReadAsync(100, new byte[512]));
        Assert.Equal(BlockBackendException.EINVAL, unaligned.Errno);
        var pastEnd = await Assert.ThrowsAsync<BlockBackendException>(async () => await volume.WriteAsync(size - 512, new byte[1024]));
        Assert.Equal(BlockBackendException.EINVAL, pastEnd.Errno);
    }

    public static async Task AssertContentAsync(IBlockBackend volume, byte[] model, string when)
    {
        var buffer = new byte[MiB];
        for (long offset = 0; offset < model.Length; offset += buffer.Length)
        {
            var length = (int)Math.Min(buffer.Length, model.Length - offset);
            await volume.ReadAsync(offset, buffer.AsMemory(0, length));
            AssertSame(model.AsSpan((int)offset, length), buffer.AsSpan(0, length), $"{when}: content at {offset}");
        }
    }

    public static byte[] Pattern(int seed, int length)
    {
        var data = new byte[length];
        new Random(seed).NextBytes(data);
        return data;
    }

    public static void AssertSame(ReadOnlySpan<byte> expected, ReadOnlySpan<byte> actual, string what)
    {
        if (!expected.SequenceEqual(actual))
        {
            var at = expected.CommonPrefixLength(actual);
            Assert.Fail($"{what}: first difference at byte {at} (expected {expected[at]}, got {actual[at]})");
        }
    }
}
