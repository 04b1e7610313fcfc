namespace Collector.Http;

/// <summary>The byte buffers of reassembly (carried lines, header blocks, bodies, decoded bodies).
///
/// Why not ArrayPool&lt;byte&gt;.Shared: its per-thread and per-core caches hold a few arrays per
/// size, while reassembly keeps one buffer per message in flight (thousands of connections at
/// once); the shared pool then misses and allocates on most rents. This pool keeps returned arrays
/// per power-of-two size (256 B … 1 MiB) in a ThreadCachedPool (a small stack per thread, batches
/// moved to and from a shared stack),
/// and bounds what the shared stacks keep idle (MaxIdleBytes): beyond that a returned array is left
/// to the GC, so a burst does not pin memory.</summary>
public static class BufferPool
{
    private const int MinShift = 8;  // 256 B
    private const int MaxShift = 20; // 1 MiB; larger buffers are allocated and left to the GC
    public const long MaxIdleBytes = 64L << 20;
    private const int ThreadBytesPerSize = 64 << 10; // a thread's own stack: about this much per size

    private static readonly IdleBudget Budget = new(MaxIdleBytes);

    private static readonly ThreadCachedPool<byte[]>[] Buckets =
        Enumerable.Range(MinShift, MaxShift - MinShift + 1).Select(s => new ThreadCachedPool<byte[]>(
            batch: Math.Clamp(ThreadBytesPerSize >> s, 1, 32),
            maxShared: (int)Math.Min(8192, MaxIdleBytes >> s),
            Budget, itemBytes: 1L << s)).ToArray();

    /// <summary>Bytes held idle in the shared stacks (each thread's own stack holds at most
    /// 2 × 64 KiB per size on top).</summary>
    public static long IdleBytes => Budget.Used;

    /// <summary>An array of at least size bytes (a power of two from 256 B; exact above 1 MiB).</summary>
    public static byte[] Rent(int size)
    {
        var shift = size <= 1 << MinShift ? MinShift : 32 - int.LeadingZeroCount(size - 1);
        if (shift > MaxShift) return GC.AllocateUninitializedArray<byte>(size);
        return Buckets[shift - MinShift].TryRent() ?? GC.AllocateUninitializedArray<byte>(1 << shift);
    }

    public static void Return(byte[] array)
    {
        var len = array.Length;
        if (len < 1 << MinShift || len > 1 << MaxShift || (len & (len - 1)) != 0) return;
        Buckets[int.Log2(len) - MinShift].Return(array);
    }
}
