using System.Text;

namespace UblkCsi.Engine.Threading;

/// <summary>
/// A set of CPU numbers in the kernel's cpumask layout (an array of 64-bit words, CPU n is bit n % 64
/// of word n / 64), sized for <see cref="MaxCpus"/> CPUs like glibc's cpu_set_t.
/// </summary>
public sealed class CpuSet
{
    /// <summary>CPUs a set can name; 128 bytes, glibc's cpu_set_t and what ublksrv passes to GET_QUEUE_AFFINITY.</summary>
    public const int MaxCpus = 1024;

    /// <summary>Bytes of the kernel representation.</summary>
    public const int ByteLength = MaxCpus / 8;

    private readonly ulong[] _words = new ulong[MaxCpus / 64];

    /// <summary>A set holding <paramref name="cpus"/>.</summary>
    public static CpuSet Of(params int[] cpus)
    {
        var set = new CpuSet();
        foreach (var cpu in cpus)
        {
            set.Add(cpu);
        }

        return set;
    }

    /// <summary>A set read from the kernel's bytes (little-endian words).</summary>
    public static CpuSet FromBytes(ReadOnlySpan<byte> mask)
    {
        var set = new CpuSet();
        for (var i = 0; i < Math.Min(mask.Length, ByteLength); i++)
        {
            for (var bit = 0; bit < 8; bit++)
            {
                if ((mask[i] & (1 << bit)) != 0)
                {
                    set.Add((i * 8) + bit);
                }
            }
        }

        return set;
    }

    /// <summary>Number of CPUs in the set.</summary>
    public int Count => _words.Sum(w => System.Numerics.BitOperations.PopCount(w));

    public bool IsEmpty => Array.TrueForAll(_words, w => w == 0);

    public void Add(int cpu)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(cpu);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(cpu, MaxCpus);
        _words[cpu / 64] |= 1UL << (cpu % 64);
    }

    public bool Contains(int cpu) => cpu is >= 0 and < MaxCpus && (_words[cpu / 64] & (1UL << (cpu % 64))) != 0;

    /// <summary>CPUs in both sets.</summary>
    public CpuSet Intersect(CpuSet other)
    {
        var result = new CpuSet();
        for (var i = 0; i < _words.Length; i++)
        {
            result._words[i] = _words[i] & other._words[i];
        }

        return result;
    }

    /// <summary>Writes the kernel representation into <paramref name="destination"/> (at least <see cref="ByteLength"/> bytes).</summary>
    public void CopyTo(Span<byte> destination)
    {
        for (var i = 0; i < _words.Length; i++)
        {
            BitConverter.TryWriteBytes(destination.Slice(i * 8, 8), _words[i]);
        }
    }

    /// <summary>The list form of /proc and taskset: "0-3,8".</summary>
    public override string ToString()
    {
        var text = new StringBuilder();
        for (var cpu = 0; cpu < MaxCpus; cpu++)
        {
            if (!Contains(cpu))
            {
                continue;
            }

            var last = cpu;
            while (Contains(last + 1))
            {
                last++;
            }

            text.Append(text.Length == 0 ? string.Empty : ",").Append(cpu);
            if (last > cpu)
            {
                text.Append('-').Append(last);
            }

            cpu = last;
        }

        return text.Length == 0 ? "(none)" : text.ToString();
    }
}
