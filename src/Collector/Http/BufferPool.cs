namespace Collector.Http;

/// <summary>The byte buffers of reassembly (carried lines, header blocks, bodies, decoded bodies).
///
/// Why not ArrayPool&lt;byte&gt;.Shared: its per-thread and per-core caches hold a few arrays per
/// size, while reassembly keeps one buffer per message in flight (thousands of connections at
/// once) and rents on the event thread what the output thread returns; the shared pool then misses
/// and allocates on most rents. This pool keeps returned arrays in one stack per power-of-two size
/// (256 B … 1 MiB) behind a lock that is held for a push or a pop, and bounds what it keeps idle
/// (MaxIdleBytes): beyond that a returned array is left to the GC, so a burst does not pin memory.</summary>
public static class BufferPool
{
    private const int MinShift = 8;  // 256 B
    private const int MaxShift = 20; // 1 MiB; larger buffers are allocated and left to the GC
    public const long MaxIdleBytes = 64L << 20;

    private sealed class Bucket(int size)
    {
        public readonly int Size = size;
        public readonly Lock Lock = new();
        public readonly byte[]?[] Items = new byte[Math.Max(4, (int)Math.Min(8192, MaxIdleBytes / size))][];
        public int Count;
    }

    private static readonly Bucket[] Buckets =
        Enumerable.Range(MinShift, MaxShift - MinShift + 1).Select(s => new Bucket(1 << s)).ToArray();

    private static long s_idle;

    /// <summary>Bytes held idle in the pool.</summary>
    public static long IdleBytes => Interlocked.Read(ref s_idle);

    /// <summary>An array of at least size bytes (a power of two from 256 B; exact above 1 MiB).</summary>
    public static byte[] Rent(int size)
    {
        var shift = size <= 1 << MinShift ? MinShift : 32 - int.LeadingZeroCount(size - 1);
        if (shift > MaxShift) return GC.AllocateUninitializedArray<byte>(size);
        var b = Buckets[shift - MinShift];
        lock (b.Lock)
        {
            if (b.Count > 0)
            {
                var a = b.Items[--b.Count]!;
                b.Items[b.Count] = null;
                Interlocked.Add(ref s_idle, -a.Length);
                return a;
            }
        }
        return GC.AllocateUninitializedArray<byte>(b.Size);
    }

    public static void Return(byte[] array)
    {
        var len = array.Length;
        if (len < 1 << MinShift || len > 1 << MaxShift || (len & (len - 1)) != 0) return;
        if (Interlocked.Read(ref s_idle) + len > MaxIdleBytes) return;
        var b = Buckets[int.Log2(len) - MinShift];
        lock (b.Lock)
        {
            if (b.Count == b.Items.Length) return;
            b.Items[b.Count++] = array;
        }
        Interlocked.Add(ref s_idle, len);
    }
}
