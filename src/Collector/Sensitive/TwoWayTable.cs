using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Collector.Sensitive;

/// <summary>A bounded cache of entries in sets of two, found by a hash: the caller compares what it
/// looks for with both ways of its set (<see cref="Way"/>), says which it used (<see cref="Used"/>),
/// and puts an entry in place of the one used less lately on a miss (<see cref="Add"/>). Memory is fixed by the
/// number of sets; two ways keep two hot entries that share a set from evicting each other.</summary>
internal sealed class TwoWayTable<T> where T : struct
{
    private readonly T[] _ways;
    private readonly bool[] _secondLater;
    private readonly int _setMask;

    /// <summary>capacity: entries at most (rounded up to a power of two, at least 2).</summary>
    public TwoWayTable(int capacity)
    {
        var sets = (int)BitOperations.RoundUpToPowerOf2((uint)Math.Max(1, capacity / 2));
        _ways = new T[sets * 2];
        _secondLater = new bool[sets];
        _setMask = sets - 1;
    }

    /// <summary>The set of a hash (its high bits: see <see cref="TwoWayTable.Hash"/>).</summary>
    public int SetOf(ulong hash) => (int)(hash >> 40) & _setMask;

    public ref T Way(int set, int way) => ref _ways[2 * set + way];

    public void Used(int set, int way) => _secondLater[set] = way == 1;

    /// <summary>On a miss: entry in place of the way of set used less lately (the second first,
    /// then in turn), and that way counted as used.</summary>
    public void Add(int set, T entry)
    {
        var way = _secondLater[set] ? 0 : 1;
        _ways[2 * set + way] = entry;
        Used(set, way);
    }
}

/// <summary>The hash <see cref="TwoWayTable{T}"/>s are found by.</summary>
internal static class TwoWayTable
{
    /// <summary>A hash of every byte, 8 at a time (the keys are short: paths, names, hosts), whose
    /// last multiply carries every bit into the high ones that <see cref="TwoWayTable{T}.SetOf"/> takes.</summary>
    public static ulong Hash(ReadOnlySpan<byte> s, ulong seed = 0)
    {
        var h = seed ^ (ulong)s.Length * 0x9E3779B97F4A7C15UL;
        ref var b = ref MemoryMarshal.GetReference(s);
        var i = 0;
        for (; i + 8 <= s.Length; i += 8)
            h = BitOperations.RotateLeft((h ^ Unsafe.ReadUnaligned<ulong>(ref Unsafe.Add(ref b, i))) * 0xC2B2AE3D27D4EB4FUL, 29);
        ulong last = 0;
        for (var k = s.Length - 1; k >= i; k--) last = last << 8 | Unsafe.Add(ref b, k);
        h = (h ^ last) * 0xC2B2AE3D27D4EB4FUL;
        return (h ^ h >> 32) * 0x165667B19E3779F9UL;
    }
}
