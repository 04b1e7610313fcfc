namespace Collector.Http;

/// <summary>A pool that is cheap on the thread that uses it and safe on any other (the event thread
/// does all the renting and returning in the collector; tests and the bench use several threads).
///
/// Each thread keeps a small stack of its own (a magazine of up to 2 × Batch items) and touches the
/// shared stack only to move Batch items at once: one lock per Batch rents or returns (a lock per
/// object, with the output then on a second thread, took a tenth of the collector's CPU under
/// load). Bounds: the shared stack keeps at most MaxShared items (and, with a
/// budget, at most the budget's bytes across the pools that share it), each thread at most
/// 2 × Batch; beyond that a returned object is left to the GC.</summary>
internal sealed class ThreadCachedPool<T> where T : class
{
    private static int s_pools;
    // one magazine per pool per thread; pools are few and live for the process
    [ThreadStatic] private static Magazine?[]? t_magazines;

    private readonly int _id = Interlocked.Increment(ref s_pools) - 1;
    private readonly int _batch;
    private readonly IdleBudget? _budget;
    private readonly long _itemBytes;
    private readonly T?[] _shared;
    private readonly Lock _lock = new();
    private int _sharedCount;

    private sealed class Magazine(int capacity)
    {
        public readonly T?[] Items = new T?[capacity];
        public int Count;
    }

    public ThreadCachedPool(int batch, int maxShared, IdleBudget? budget = null, long itemBytes = 0)
    {
        _batch = Math.Max(1, batch);
        _budget = budget;
        _itemBytes = itemBytes;
        _shared = new T?[Math.Max(_batch, maxShared)];
    }

    /// <summary>A pooled object, or null when there is none (the caller makes one).</summary>
    public T? TryRent()
    {
        var m = Local();
        if (m.Count == 0)
        {
            lock (_lock)
            {
                var n = Math.Min(_batch, _sharedCount);
                if (n == 0) return null;
                _sharedCount -= n;
                _budget?.Release(n * _itemBytes);
                Array.Copy(_shared, _sharedCount, m.Items, 0, n);
                Array.Clear(_shared, _sharedCount, n);
                m.Count = n;
            }
        }
        var item = m.Items[--m.Count]!;
        m.Items[m.Count] = null;
        return item;
    }

    /// <summary>Takes an object back; false when every stack is full (the caller lets it go).</summary>
    public bool Return(T item)
    {
        var m = Local();
        if (m.Count == m.Items.Length)
        {
            // the magazine is full: move its older half to the shared stack
            lock (_lock)
            {
                var n = Math.Min(_batch, _shared.Length - _sharedCount);
                if (n > 0 && _budget is not null && !_budget.TryTake(n * _itemBytes)) n = 0;
                if (n > 0)
                {
                    Array.Copy(m.Items, 0, _shared, _sharedCount, n);
                    _sharedCount += n;
                    Array.Copy(m.Items, n, m.Items, 0, m.Count - n);
                    Array.Clear(m.Items, m.Count - n, n);
                    m.Count -= n;
                }
            }
            if (m.Count == m.Items.Length) return false;
        }
        m.Items[m.Count++] = item;
        return true;
    }

    private Magazine Local()
    {
        var all = t_magazines;
        if (all is null || all.Length <= _id)
        {
            var grown = new Magazine?[Math.Max(Volatile.Read(ref s_pools), _id + 1)];
            all?.CopyTo(grown, 0);
            t_magazines = all = grown;
        }
        return all[_id] ??= new Magazine(2 * _batch);
    }
}

/// <summary>Bytes that pools sharing it may hold idle, together.</summary>
internal sealed class IdleBudget(long maxBytes)
{
    private long _used;

    public long Used => Interlocked.Read(ref _used);

    public bool TryTake(long bytes)
    {
        if (Interlocked.Add(ref _used, bytes) <= maxBytes) return true;
        Interlocked.Add(ref _used, -bytes);
        return false;
    }

    public void Release(long bytes) => Interlocked.Add(ref _used, -bytes);
}
