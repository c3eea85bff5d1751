using UblkCsi.Engine;
using UblkCsi.Stores;

namespace UblkCsi.Stores.Tests.Conformance;

/// <summary>
/// The behaviour every store promises through <see cref="IVolumeStore"/> and <see cref="IBlockBackend"/>.
/// Data is checked against a plain byte-array model of the volume.
/// </summary>
public abstract partial class StoreConformanceTests(StoreFixture fixture)
{
    private const long MiB = 1 << 20;

    protected StoreFixture Fixture { get; } = fixture;

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public async Task SeededRandomOperationsMatchModelAndSurviveReopen(int seed)
    {
        await using var ctx = await Fixture.CreateStoreAsync();
        const long size = 12 * MiB + 8192; // not a multiple of any chunk size: the last chunk is partial
        var volume = await ctx.Store.CreateVolumeAsync(new CreateVolumeRequest($"random-{seed}", size));
        var model = new byte[size];
        var random = new Random(seed);
        await using (var backend = await ctx.Store.OpenVolumeAsync(volume.Id))
        {
            for (var i = 0; i < 250; i++)
            {
                var (offset, length) = RandomRange(random, size, maxLength: 768 * 1024);
                switch (random.Next(10))
                {
                    case < 4:
                        var data = Pattern(random.Next(), length);
                        var flags = random.Next(8) == 0 ? BlockWriteFlags.Fua : BlockWriteFlags.None;
                        await backend.WriteAsync(offset, data, flags);
                        data.CopyTo(model, offset);
                        break;
                    case < 7:
                        var read = new byte[length];
                        await backend.ReadAsync(offset, read);
                        AssertSame(model.AsSpan((int)offset, length), read, $"op {i}: read at {offset}+{length}");
                        break;
                    case 7:
                        await backend.DiscardAsync(offset, length);
                        Array.Clear(model, (int)offset, length);
                        break;
                    case 8:
                        await backend.WriteZeroesAsync(offset, length);
                        Array.Clear(model, (int)offset, length);
                        break;
                    default:
                        await backend.FlushAsync();
                        break;
                }
            }

            await backend.FlushAsync();
            await AssertContentAsync(backend, model, "before reopen");
        }

        var reopened = await Fixture.ReopenAsync(ctx);
        await using var again = await reopened.OpenVolumeAsync(volume.Id);
        await AssertContentAsync(again, model, "after reopen");
    }

    [Fact]
    public async Task UnwrittenRangesReadAsZeros()
    {
        await using var ctx = await Fixture.CreateStoreAsync();
        var volume = await ctx.Store.CreateVolumeAsync(new CreateVolumeRequest("sparse", 64 * MiB));
        await using var backend = await ctx.Store.OpenVolumeAsync(volume.Id);
        await backend.WriteAsync(20 * MiB, Pattern(7, 4096));

        var buffer = new byte[2 * MiB];
        buffer.AsSpan().Fill(0xEE);
        await backend.ReadAsync(40 * MiB, buffer);
        Assert.False(buffer.AsSpan().ContainsAnyExcept((byte)0), "an unwritten range must read as zeros");

        var around = new byte[3 * 4096];
        await backend.ReadAsync(20 * MiB - 4096, around);
        Assert.False(around.AsSpan(0, 4096).ContainsAnyExcept((byte)0));
        AssertSame(Pattern(7, 4096), around.AsSpan(4096, 4096), "written block");
        Assert.False(around.AsSpan(8192).ContainsAnyExcept((byte)0));
    }

    [Fact]
    public async Task DiscardAndWriteZeroesReadBackAsZerosAndSpareNeighbours()
    {
        await using var ctx = await Fixture.CreateStoreAsync();
        var volume = await ctx.Store.CreateVolumeAsync(new CreateVolumeRequest("zeroes", 16 * MiB));
        var data = Pattern(11, (int)(16 * MiB));
        await using (var backend = await ctx.Store.OpenVolumeAsync(volume.Id))
        {
            await backend.WriteAsync(0, data);

            await backend.DiscardAsync(MiB + 512, 3 * MiB);       // unaligned to pages, spans chunks
            await backend.WriteZeroesAsync(9 * MiB - 4096, 2 * MiB + 1024);
            Array.Clear(data, (int)MiB + 512, (int)(3 * MiB));
            Array.Clear(data, (int)(9 * MiB - 4096), (int)(2 * MiB + 1024));

            await AssertContentAsync(backend, data, "after discard/write-zeroes");
            await backend.FlushAsync();
        }

        // Closed first: a writer still open would keep the next one out (the file store's image lock).
        await using var reopened = await (await Fixture.ReopenAsync(ctx)).OpenVolumeAsync(volume.Id);
        await AssertContentAsync(reopened, data, "after flush and reopen");
    }

    [Fact]
    public async Task FlushedWritesSurviveReopen()
    {
        await using var ctx = await Fixture.CreateStoreAsync();
        var volume = await ctx.Store.CreateVolumeAsync(new CreateVolumeRequest("durable", 32 * MiB));
        var first = Pattern(21, (int)(5 * MiB));
        var fua = Pattern(22, 8192);
        await using (var backend = await ctx.Store.OpenVolumeAsync(volume.Id))
        {
            await backend.WriteAsync(3 * MiB, first);
            await backend.FlushAsync();
            await backend.WriteAsync(30 * MiB, fua, BlockWriteFlags.Fua);
        }

        var store = await Fixture.ReopenAsync(ctx);
        await using var again = await store.OpenVolumeAsync(volume.Id);
        var read = new byte[first.Length];
        await again.ReadAsync(3 * MiB, read);
        AssertSame(first, read, "flushed write");
        var fuaRead = new byte[fua.Length];
        await again.ReadAsync(30 * MiB, fuaRead);
        AssertSame(fua, fuaRead, "FUA write");
    }

    [Fact]
    public async Task ConcurrentWritersToDisjointRangesAllLand()
    {
        await using var ctx = await Fixture.CreateStoreAsync();
        const int writers = 8;
        const long region = 2 * MiB;
        var volume = await ctx.Store.CreateVolumeAsync(new CreateVolumeRequest("concurrent", writers * region));
        var model = new byte[writers * region];
        await using var backend = await ctx.Store.OpenVolumeAsync(volume.Id);

        await Task.WhenAll(Enumerable.Range(0, writers).Select(w => Task.Run(async () =>
        {
            var random = new Random(100 + w);
            for (var i = 0; i < 40; i++)
            {
                var length = random.Next(1, 65) * 4096;
                var offset = w * region + random.Next(0, (int)((region - length) / 512)) * 512L;
                var data = Pattern(random.Next(), length);
                await backend.WriteAsync(offset, data);
                data.CopyTo(model, offset); // regions are disjoint: no lock needed on the model
            }
        })));

        await backend.FlushAsync();
        await AssertContentAsync(backend, model, "after concurrent writes");
    }

    [Fact]
    public async Task OneMebibyteIoAcrossChunkBoundaries()
    {
        await using var ctx = await Fixture.CreateStoreAsync();
        var volume = await ctx.Store.CreateVolumeAsync(new CreateVolumeRequest("big-io", 16 * MiB));
        await using var backend = await ctx.Store.OpenVolumeAsync(volume.Id);
        foreach (var offset in new[] { 0, 4 * MiB - 512, 7 * MiB + 4096, 15 * MiB })
        {
            var data = Pattern((int)offset, (int)MiB);
            await backend.WriteAsync(offset, data);
            var read = new byte[MiB];
            await backend.ReadAsync(offset, read);
            AssertSame(data, read, $"1 MiB at {offset}");
        }
    }

    [Theory]
    [InlineData(100, 4096)]
    [InlineData(4096, 1000)]
    [InlineData(513, 512)]
    public async Task UnalignedIoIsRejectedWithEinval(long offset, int length)
    {
        await using var ctx = await Fixture.CreateStoreAsync();
        var volume = await ctx.Store.CreateVolumeAsync(new CreateVolumeRequest("unaligned", MiB));
        await using var backend = await ctx.Store.OpenVolumeAsync(volume.Id);
        var read = await Assert.ThrowsAsync<BlockBackendException>(async () => await backend.ReadAsync(offset, new byte[length]));
        Assert.Equal(BlockBackendException.EINVAL, read.Errno);
        Assert.Contains("multiples of 512", read.Message);
        var write = await Assert.ThrowsAsync<BlockBackendException>(async () => await backend.WriteAsync(offset, new byte[length]));
        Assert.Equal(BlockBackendException.EINVAL, write.Errno);
        await Assert.ThrowsAsync<BlockBackendException>(async () => await backend.DiscardAsync(offset, length));
    }

    [Fact]
    public async Task IoPastTheEndIsRejected()
    {
        await using var ctx = await Fixture.CreateStoreAsync();
        var volume = await ctx.Store.CreateVolumeAsync(new CreateVolumeRequest("bounded", MiB));
        await using var backend = await ctx.Store.OpenVolumeAsync(volume.Id);
        Assert.Equal(MiB, backend.Info.SizeBytes);

        var e = await Assert.ThrowsAsync<BlockBackendException>(async () => await backend.WriteAsync(MiB - 512, new byte[1024]));
        Assert.Equal(BlockBackendException.EINVAL, e.Errno);
        Assert.Contains("inside the volume", e.Message);
        await Assert.ThrowsAsync<BlockBackendException>(async () => await backend.ReadAsync(MiB, new byte[512]));
        await Assert.ThrowsAsync<BlockBackendException>(async () => await backend.ReadAsync(-512, new byte[512]));
        await Assert.ThrowsAsync<BlockBackendException>(async () => await backend.WriteZeroesAsync(0, MiB + 512));
        await backend.WriteAsync(MiB - 512, new byte[512]); // the last sector is fine
    }

    [Fact]
    public async Task SnapshotIsIsolatedFromLaterWrites()
    {
        await using var ctx = await Fixture.CreateStoreAsync();
        var volume = await ctx.Store.CreateVolumeAsync(new CreateVolumeRequest("origin", 8 * MiB));
        var before = Pattern(31, (int)(8 * MiB));
        await using (var backend = await ctx.Store.OpenVolumeAsync(volume.Id))
        {
            await backend.WriteAsync(0, before);
            await backend.FlushAsync();

            var snapshot = await ctx.Store.CreateSnapshotAsync(volume.Id, "snap-1");
            Assert.True(snapshot.ReadyToUse);
            Assert.Equal(volume.Id, snapshot.SourceVolumeId);
            Assert.Equal(8 * MiB, snapshot.SizeBytes);
            Assert.True(snapshot.CreatedUtc > DateTimeOffset.UtcNow.AddMinutes(-5));

            await backend.WriteAsync(MiB, Pattern(32, (int)MiB));
            await backend.DiscardAsync(5 * MiB, MiB);
            await backend.FlushAsync();
        }

        var restored = await ctx.Store.CreateVolumeAsync(new CreateVolumeRequest("restored", 0, VolumeSource.FromSnapshot("snap-1")));
        Assert.Equal(8 * MiB, restored.SizeBytes);
        Assert.Equal(VolumeSource.FromSnapshot("snap-1"), restored.Source);
        await using var view = await ctx.Store.OpenVolumeAsync(restored.Id);
        await AssertContentAsync(view, before, "volume restored from the snapshot");
    }

    [Fact]
    public async Task CloneAndSourceAreIndependent()
    {
        await using var ctx = await Fixture.CreateStoreAsync();
        var source = await ctx.Store.CreateVolumeAsync(new CreateVolumeRequest("clone-source", 8 * MiB));
        var sourceModel = Pattern(41, (int)(8 * MiB));
        await using (var s = await ctx.Store.OpenVolumeAsync(source.Id))
        {
            await s.WriteAsync(0, sourceModel);
            await s.FlushAsync();
        }

        var clone = await ctx.Store.CreateVolumeAsync(new CreateVolumeRequest("clone", 12 * MiB, VolumeSource.FromVolume(source.Id)));
        Assert.Equal(12 * MiB, clone.SizeBytes);
        var cloneModel = new byte[12 * MiB];
        sourceModel.CopyTo(cloneModel, 0);

        await using (var c = await ctx.Store.OpenVolumeAsync(clone.Id))
        await using (var s = await ctx.Store.OpenVolumeAsync(source.Id))
        {
            await AssertContentAsync(c, cloneModel, "fresh clone");
            var intoClone = Pattern(42, (int)(2 * MiB));
            await c.WriteAsync(3 * MiB, intoClone);
            intoClone.CopyTo(cloneModel, 3 * MiB);
            var intoSource = Pattern(43, (int)MiB);
            await s.WriteAsync(6 * MiB, intoSource);
            intoSource.CopyTo(sourceModel, 6 * MiB);
            await c.FlushAsync();
            await s.FlushAsync();
        }

        var store = await Fixture.ReopenAsync(ctx);
        await using var clone2 = await store.OpenVolumeAsync(clone.Id);
        await using var source2 = await store.OpenVolumeAsync(source.Id);
        await AssertContentAsync(clone2, cloneModel, "clone after both were written");
        await AssertContentAsync(source2, sourceModel, "source after both were written");
    }

    [Fact]
    public async Task ExpandKeepsDataAndNeverShrinks()
    {
        await using var ctx = await Fixture.CreateStoreAsync();
        var volume = await ctx.Store.CreateVolumeAsync(new CreateVolumeRequest("growing", 4 * MiB));
        var data = Pattern(51, (int)(4 * MiB));
        await using (var backend = await ctx.Store.OpenVolumeAsync(volume.Id))
        {
            await backend.WriteAsync(0, data);
            await backend.FlushAsync();
        }

        Assert.Equal(10 * MiB, await ctx.Store.ExpandVolumeAsync(volume.Id, 10 * MiB - 100)); // rounded up to 4 KiB
        Assert.Equal(10 * MiB, (await ctx.Store.GetVolumeAsync(volume.Id)).SizeBytes);
        Assert.Equal(10 * MiB, await ctx.Store.ExpandVolumeAsync(volume.Id, 2 * MiB)); // no shrink

        var store = await Fixture.ReopenAsync(ctx);
        await using var grown = await store.OpenVolumeAsync(volume.Id);
        Assert.Equal(10 * MiB, grown.Info.SizeBytes);
        var expected = new byte[10 * MiB];
        data.CopyTo(expected, 0);
        await AssertContentAsync(grown, expected, "expanded volume");
        await grown.WriteAsync(10 * MiB - 4096, Pattern(52, 4096)); // the new space is writable
    }

    [Fact]
    public async Task BadParametersAreRejectedNamingTheParameter()
    {
        await using var ctx = await Fixture.CreateStoreAsync();
        foreach (var (parameters, secrets, name) in Fixture.BadParameters(ctx))
        {
            var e = Assert.Throws<StoreParameterException>(() => StoreRegistry.Open(Fixture.Type, parameters, secrets));
            Assert.Equal(name, e.ParameterName);
            Assert.Equal(StoreErrorCode.InvalidArgument, e.Code);
            Assert.Contains(name, e.Message);
            foreach (var secret in secrets.Values)
            {
                Assert.DoesNotContain(secret, e.Message);
            }
        }
    }

    [Fact]
    public async Task BadIdsAndNamesAreRejectedBeforeTouchingStorage()
    {
        await using var ctx = await Fixture.CreateStoreAsync();
        foreach (var id in new[] { "../etc", "a/b", "", ".hidden", new string('a', 65), "x\0y", "a..b" })
        {
            var e = await Assert.ThrowsAsync<StoreParameterException>(() => ctx.Store.GetVolumeAsync(id));
            Assert.Equal("volumeId", e.ParameterName);
            await Assert.ThrowsAsync<StoreParameterException>(() => ctx.Store.OpenVolumeAsync(id));
            await Assert.ThrowsAsync<StoreParameterException>(() => ctx.Store.DeleteVolumeAsync(id));
            await Assert.ThrowsAsync<StoreParameterException>(() => ctx.Store.GetSnapshotAsync(id));
        }

        var name = await Assert.ThrowsAsync<StoreParameterException>(() => ctx.Store.CreateVolumeAsync(new CreateVolumeRequest("", MiB)));
        Assert.Equal("name", name.ParameterName);
        var size = await Assert.ThrowsAsync<StoreParameterException>(() => ctx.Store.CreateVolumeAsync(new CreateVolumeRequest("zero", 0)));
        Assert.Equal("sizeBytes", size.ParameterName);
        await Assert.ThrowsAsync<StoreOutOfRangeException>(() => ctx.Store.CreateVolumeAsync(new CreateVolumeRequest("huge", StoreLimits.MaximumVolumeSizeBytes + 1)));

        // A name that is not an ID still works: it maps to a hashed ID, stably.
        var odd = await ctx.Store.CreateVolumeAsync(new CreateVolumeRequest("Team A / data #1", MiB));
        Assert.StartsWith("h-", odd.Id);
        Assert.Equal(odd.Id, VolumeIds.FromName("Team A / data #1"));
        Assert.Equal("Team A / data #1", (await ctx.Store.GetVolumeAsync(odd.Id)).Name);
    }

    [Fact]
    public async Task CreateIsIdempotentByNameAndDeleteReportsAbsence()
    {
        await using var ctx = await Fixture.CreateStoreAsync();
        var first = await ctx.Store.CreateVolumeAsync(new CreateVolumeRequest("pvc-0001", 3 * MiB));
        var again = await ctx.Store.CreateVolumeAsync(new CreateVolumeRequest("pvc-0001", 3 * MiB));
        Assert.Equal(first, again);
        Assert.Equal("pvc-0001", first.Id);

        var conflict = await Assert.ThrowsAsync<StoreAlreadyExistsException>(() => ctx.Store.CreateVolumeAsync(new CreateVolumeRequest("pvc-0001", 4 * MiB)));
        Assert.Equal(StoreErrorCode.AlreadyExists, conflict.Code);

        await ctx.Store.CreateSnapshotAsync(first.Id, "snap-a");
        Assert.Equal("snap-a", (await ctx.Store.CreateSnapshotAsync(first.Id, "snap-a")).Id);
        var other = await ctx.Store.CreateVolumeAsync(new CreateVolumeRequest("pvc-0002", MiB));
        await Assert.ThrowsAsync<StoreAlreadyExistsException>(() => ctx.Store.CreateSnapshotAsync(other.Id, "snap-a"));

        Assert.True(await ctx.Store.DeleteVolumeAsync(first.Id));
        Assert.False(await ctx.Store.DeleteVolumeAsync(first.Id));
        Assert.True(await ctx.Store.DeleteSnapshotAsync("snap-a"));
        Assert.False(await ctx.Store.DeleteSnapshotAsync("snap-a"));
    }

    [Fact]
    public async Task MissingObjectsAreNotFound()
    {
        await using var ctx = await Fixture.CreateStoreAsync();
        var e = await Assert.ThrowsAsync<StoreNotFoundException>(() => ctx.Store.GetVolumeAsync("nope"));
        Assert.Equal(StoreErrorCode.NotFound, e.Code);
        Assert.Equal(StoreObjectKind.Volume, e.Kind);
        await Assert.ThrowsAsync<StoreNotFoundException>(() => ctx.Store.OpenVolumeAsync("nope"));
        await Assert.ThrowsAsync<StoreNotFoundException>(() => ctx.Store.ExpandVolumeAsync("nope", MiB));
        await Assert.ThrowsAsync<StoreNotFoundException>(() => ctx.Store.CreateSnapshotAsync("nope", "s"));
        var snap = await Assert.ThrowsAsync<StoreNotFoundException>(() => ctx.Store.GetSnapshotAsync("nope"));
        Assert.Equal(StoreObjectKind.Snapshot, snap.Kind);
        await Assert.ThrowsAsync<StoreNotFoundException>(() => ctx.Store.CreateVolumeAsync(new CreateVolumeRequest("r", MiB, VolumeSource.FromSnapshot("nope"))));
        await Assert.ThrowsAsync<StoreNotFoundException>(() => ctx.Store.CreateVolumeAsync(new CreateVolumeRequest("c", MiB, VolumeSource.FromVolume("nope"))));
    }

    [Fact]
    public async Task DeletingAVolumeKeepsItsSnapshotsUsable()
    {
        await using var ctx = await Fixture.CreateStoreAsync();
        var volume = await ctx.Store.CreateVolumeAsync(new CreateVolumeRequest("doomed", 6 * MiB));
        var data = Pattern(61, (int)(6 * MiB));
        await using (var backend = await ctx.Store.OpenVolumeAsync(volume.Id))
        {
            await backend.WriteAsync(0, data);
            await backend.FlushAsync();
        }

        await ctx.Store.CreateSnapshotAsync(volume.Id, "keep-1");
        await ctx.Store.CreateSnapshotAsync(volume.Id, "keep-2");
        Assert.True(await ctx.Store.DeleteVolumeAsync(volume.Id));

        var snapshots = await ctx.Store.ListSnapshotsAsync(volume.Id);
        Assert.Equal(["keep-1", "keep-2"], snapshots.Select(s => s.Id));
        Assert.True(await ctx.Store.DeleteSnapshotAsync("keep-1"));

        var restored = await ctx.Store.CreateVolumeAsync(new CreateVolumeRequest("reborn", 6 * MiB, VolumeSource.FromSnapshot("keep-2")));
        await using var view = await (await Fixture.ReopenAsync(ctx)).OpenVolumeAsync(restored.Id);
        await AssertContentAsync(view, data, "restored after the source and a sibling snapshot were deleted");
    }

    [Fact]
    public async Task RestoringIntoASmallerVolumeIsOutOfRange()
    {
        await using var ctx = await Fixture.CreateStoreAsync();
        var volume = await ctx.Store.CreateVolumeAsync(new CreateVolumeRequest("eight", 8 * MiB));
        await ctx.Store.CreateSnapshotAsync(volume.Id, "eight-snap");
        var e = await Assert.ThrowsAsync<StoreOutOfRangeException>(() =>
            ctx.Store.CreateVolumeAsync(new CreateVolumeRequest("four", 4 * MiB, VolumeSource.FromSnapshot("eight-snap"))));
        Assert.Equal(StoreErrorCode.OutOfRange, e.Code);
    }

    [Fact]
    public async Task ListsAreOrderedAndFiltered()
    {
        await using var ctx = await Fixture.CreateStoreAsync();
        foreach (var name in new[] { "vol-c", "vol-a", "vol-b" })
        {
            await ctx.Store.CreateVolumeAsync(new CreateVolumeRequest(name, MiB));
        }

        await ctx.Store.CreateSnapshotAsync("vol-a", "s-2");
        await ctx.Store.CreateSnapshotAsync("vol-b", "s-1");
        await ctx.Store.CreateSnapshotAsync("vol-a", "s-3");

        var volumes = await ctx.Store.ListVolumesAsync();
        Assert.Equal(["vol-a", "vol-b", "vol-c"], volumes.Select(v => v.Id));
        Assert.All(volumes, v => Assert.Equal(MiB, v.SizeBytes));
        Assert.Equal(["s-1", "s-2", "s-3"], (await ctx.Store.ListSnapshotsAsync()).Select(s => s.Id));
        Assert.Equal(["s-2", "s-3"], (await ctx.Store.ListSnapshotsAsync("vol-a")).Select(s => s.Id));
        Assert.Empty(await ctx.Store.ListSnapshotsAsync("vol-c"));
    }

    [Fact]
    public async Task CapacityIsReported()
    {
        await using var ctx = await Fixture.CreateStoreAsync();
        var capacity = await ctx.Store.GetCapacityAsync();
        Assert.True(capacity.MaximumVolumeSizeBytes >= capacity.MinimumVolumeSizeBytes);
        Assert.True(capacity.AvailableBytes is null or > 0);
    }

    [Fact]
    public async Task ReadOnlyOpenRefusesWrites()
    {
        await using var ctx = await Fixture.CreateStoreAsync();
        var volume = await ctx.Store.CreateVolumeAsync(new CreateVolumeRequest("ro", MiB));
        await using var backend = await ctx.Store.OpenVolumeAsync(volume.Id, VolumeAccess.ReadOnly);
        Assert.True((backend.Info.Features & BlockBackendFeatures.ReadOnly) != 0);
        var e = await Assert.ThrowsAsync<BlockBackendException>(async () => await backend.WriteAsync(0, new byte[4096]));
        Assert.Equal(BlockBackendException.EROFS, e.Errno);
        await Assert.ThrowsAsync<BlockBackendException>(async () => await backend.DiscardAsync(0, 4096));
        await backend.ReadAsync(0, new byte[4096]);
    }

    protected static byte[] Pattern(int seed, int length)
    {
        var data = new byte[length];
        new Random(seed).NextBytes(data);
        return data;
    }

    protected static (long Offset, int Length) RandomRange(Random random, long size, int maxLength)
    {
        var length = random.Next(1, maxLength / 512 + 1) * 512;
        var offset = random.NextInt64(0, (size - length) / 512 + 1) * 512;
        return (offset, length);
    }

    protected static async Task AssertContentAsync(IBlockBackend backend, byte[] model, string what)
    {
        Assert.Equal(model.LongLength, backend.Info.SizeBytes);
        var buffer = new byte[MiB];
        for (long offset = 0; offset < model.LongLength; offset += buffer.Length)
        {
            var n = (int)Math.Min(buffer.Length, model.LongLength - offset);
            await backend.ReadAsync(offset, buffer.AsMemory(0, n));
            AssertSame(model.AsSpan((int)offset, n), buffer.AsSpan(0, n), $"{what}, block at {offset}");
        }
    }

    protected static void AssertSame(ReadOnlySpan<byte> expected, ReadOnlySpan<byte> actual, string what)
    {
        if (!expected.SequenceEqual(actual))
        {
            var at = 0;
            while (expected[at] == actual[at])
            {
                at++;
            }

            Assert.Fail($"{what}: first difference at byte {at} (expected {expected[at]}, got {actual[at]})");
        }
    }
}
