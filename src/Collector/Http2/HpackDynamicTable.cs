namespace Collector.Http2;

/// <summary>What we know of one HPACK dynamic table: its newest entries, newest first.
///
/// The encoder's real table may hold more than we do, always at the old end: entries from before we
/// joined (or before a block we missed), entries our memory cap made us drop, entries we keep a
/// placeholder for because their name was a reference we could not resolve. Every operation below
/// keeps one invariant: our list is a prefix of the real table (possibly followed by entries the real
/// table already evicted, which a correct encoder never references). So dynamic index i, when i is
/// within our list, names the same entry as in the real table — we may say "unknown", never a wrong
/// name.
///
/// Entry bytes (name then value) live in one ring of bytes in insertion order, which is also
/// eviction order; an entry may wrap around the end of the ring, and readers copy those out.</summary>
internal sealed class HpackDynamicTable
{
    public const int EntryOverhead = 32;

    // SETTINGS_HEADER_TABLE_SIZE before any SETTINGS, and the table's size before any size update.
    public const int DefaultMaxSize = 4096;

    public enum Lookup { Known, NameOnly, Unknown, Invalid }

    private struct Entry
    {
        public int Offset;      // ring position of the first name byte; the value follows it
        public int NameLength;  // -1: name unknown (nothing stored)
        public int ValueLength; // -1: value not stored (it did not fit in our cap)
        public int Size;        // RFC 7541 size; a lower bound when the name is unknown
    }

    private static int Stored(in Entry e) => Math.Max(e.NameLength, 0) + Math.Max(e.ValueLength, 0);

    private readonly int _cap;

    private Entry[] _entries = [];
    private int _oldest;
    private int _count;

    private byte[] _ring = [];
    private int _ringStart;
    private int _ringUsed;

    // Sum of entry sizes as the encoder counts them (lower bounds for placeholders): drives the
    // eviction the encoder does. Never more than int.MaxValue (entries are added only when they fit
    // under an int limit) but kept long so the sums with a new entry cannot wrap.
    private long _size;

    // Our memory: stored bytes + 32 per entry, kept within _cap.
    private long _held;

    private int _knownCount;
    private int _knownSize;
    private int _placeholders;

    // The real table may hold entries older than our oldest.
    private bool _unknownTail;

    // The encoder's current maximum is known: every block since a size update (or since the start)
    // was seen. Without it, eviction can only be guessed (from the protocol maximum) and proves nothing.
    private bool _maxKnown = true;
    private int _encoderMax = DefaultMaxSize;
    private int _protocolMax = DefaultMaxSize;

    public HpackDynamicTable(int cap) => _cap = cap;

    public int Count => _count;
    public int KnownEntries => _knownCount;
    public int KnownSize => _knownSize;
    public int ProtocolMax => _protocolMax;
    public int MaxSize => Math.Min(_maxKnown ? _encoderMax : _protocolMax, _cap);
    public bool Synced => !_unknownTail && _placeholders == 0;

    /// <summary>Resolves dynamic index <paramref name="index"/> (1 = newest).</summary>
    public Lookup Find(int index, out int slot)
    {
        if (index <= _count)
        {
            slot = Wrap(_oldest + _count - index, _entries.Length);
            ref var e = ref _entries[slot];
            return e.NameLength < 0 ? Lookup.Unknown : e.ValueLength < 0 ? Lookup.NameOnly : Lookup.Known;
        }
        slot = -1;
        if (!_unknownTail) return Lookup.Invalid;
        // Every entry takes at least 32 bytes, so this far back is wrong whatever the unseen history.
        if (_maxKnown && index > _encoderMax / EntryOverhead) return Lookup.Invalid;
        return Lookup.Unknown;
    }

    public int NameLength(int slot) => _entries[slot].NameLength;
    public int ValueLength(int slot) => _entries[slot].ValueLength;

    /// <summary>The name when it lies in one piece in the ring; false when it wraps (use CopyName).</summary>
    public bool TryGetName(int slot, out ReadOnlySpan<byte> name)
    {
        ref var e = ref _entries[slot];
        return TryGet(e.Offset, e.NameLength, out name);
    }

    public bool TryGetValue(int slot, out ReadOnlySpan<byte> value)
    {
        ref var e = ref _entries[slot];
        return TryGet(ValueOffset(e), e.ValueLength, out value);
    }

    public void CopyName(int slot, Span<byte> dst)
    {
        ref var e = ref _entries[slot];
        CopyOut(e.Offset, e.NameLength, dst);
    }

    public void CopyValue(int slot, Span<byte> dst)
    {
        ref var e = ref _entries[slot];
        CopyOut(ValueOffset(e), e.ValueLength, dst);
    }

    private int ValueOffset(in Entry e) => _ring.Length == 0 ? 0 : Wrap(e.Offset + e.NameLength, _ring.Length);

    /// <summary>A position past the end of a ring (by less than its length) brought back into it.
    /// Not %: a division for every field decoded, where a compare does (ring sizes follow the cap,
    /// so need not be powers of two).</summary>
    private static int Wrap(int position, int length) => position >= length ? position - length : position;

    private bool TryGet(int offset, int length, out ReadOnlySpan<byte> bytes)
    {
        if (length <= 0) { bytes = default; return true; }
        if (offset + length <= _ring.Length) { bytes = _ring.AsSpan(offset, length); return true; }
        bytes = default;
        return false;
    }

    private void CopyOut(int offset, int length, Span<byte> dst)
    {
        var first = Math.Min(length, _ring.Length - offset);
        _ring.AsSpan(offset, first).CopyTo(dst);
        _ring.AsSpan(0, length - first).CopyTo(dst[first..]);
    }

    /// <summary>A literal with incremental indexing whose name and value we know. Neither span may
    /// point into this table: the new entry's bytes can land where an evicted entry's were.</summary>
    public void Insert(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value)
    {
        if (!EvictLikeTheEncoder(EntryOverhead + (long)name.Length + value.Length)) return;

        var nameLength = name.Length;
        var valueLength = value.Length;
        // Too big for our cap: the name alone may still fit, and a later reference then at least
        // says which header it was.
        if (EntryOverhead + (long)name.Length + value.Length > _cap)
        {
            valueLength = -1;
            if (EntryOverhead + (long)name.Length > _cap) nameLength = -1;
        }
        Add(name, nameLength, value, valueLength, EntryOverhead + name.Length + value.Length);
    }

    /// <summary>A literal with incremental indexing whose name was a reference we could not resolve:
    /// the real table gained an entry all the same, of at least this size.</summary>
    public void InsertUnknownName(int valueLength)
    {
        var size = EntryOverhead + (long)valueLength;
        if (!EvictLikeTheEncoder(size)) return;
        Add(default, -1, default, -1, (int)size);
    }

    /// <summary>Dynamic table size update from the encoder (already checked against the protocol maximum).</summary>
    public void SizeUpdate(int max)
    {
        _encoderMax = max;
        _maxKnown = true;
        // The encoder evicts the oldest first. If even our entries leave no room for one more entry
        // of the minimum size, nothing older than them can have survived.
        if (_size + EntryOverhead > max) _unknownTail = false;
        while (_count > 0 && _size > max) EvictOldest();
    }

    public void SetProtocolMax(int max)
    {
        _protocolMax = max;
        // Only a guess steers eviction without a known encoder maximum; keeping less memory is safe
        // (a dropped entry is reported unknown, never wrong).
        if (!_maxKnown)
            while (_count > 0 && _size > max) EvictOldest();
    }

    public void MarkUnsynced()
    {
        Clear();
        _unknownTail = true;
        _maxKnown = false;
    }

    private bool EvictLikeTheEncoder(long size)
    {
        var max = _maxKnown ? _encoderMax : _protocolMax;
        if (size > max)
        {
            // RFC 7541 4.4: the table is emptied and the entry not added. With the maximum only
            // guessed the encoder may have kept it; either way we know nothing of what it holds.
            Clear();
            _unknownTail = !_maxKnown;
            return false;
        }
        if (_maxKnown && _size + size + EntryOverhead > max) _unknownTail = false;
        // Sizes we hold are exact or lower bounds, so the encoder evicts at least these.
        while (_count > 0 && _size + size > max) EvictOldest();
        return true;
    }

    private void Add(ReadOnlySpan<byte> name, int nameLength, ReadOnlySpan<byte> value, int valueLength, int size)
    {
        var stored = Math.Max(nameLength, 0) + Math.Max(valueLength, 0);
        if (EntryOverhead + stored > _cap)
        {
            // A cap below 32 bytes cannot hold even a placeholder.
            Clear();
            _unknownTail = true;
            return;
        }
        while (_count > 0 && _held + EntryOverhead + stored > _cap)
        {
            // Dropped for our memory, not by the encoder: the real table still has it.
            EvictOldest();
            _unknownTail = true;
        }

        if (_count == _entries.Length) GrowEntries();
        if (_ringUsed + stored > _ring.Length) GrowRing(_ringUsed + stored);

        var offset = _ring.Length == 0 ? 0 : Wrap(_ringStart + _ringUsed, _ring.Length);
        var at = offset;
        if (nameLength > 0) at = Write(at, name);
        if (valueLength > 0) Write(at, value);
        _ringUsed += stored;

        _entries[Wrap(_oldest + _count, _entries.Length)] = new Entry
        {
            Offset = offset, NameLength = nameLength, ValueLength = valueLength, Size = size,
        };
        _count++;
        _size += size;
        _held += EntryOverhead + stored;
        if (nameLength >= 0 && valueLength >= 0)
        {
            _knownCount++;
            _knownSize += size;
        }
        else _placeholders++;
    }

    private int Write(int at, ReadOnlySpan<byte> bytes)
    {
        var first = Math.Min(bytes.Length, _ring.Length - at);
        bytes[..first].CopyTo(_ring.AsSpan(at));
        bytes[first..].CopyTo(_ring);
        return Wrap(at + bytes.Length, _ring.Length);
    }

    private void EvictOldest()
    {
        ref var e = ref _entries[_oldest];
        var stored = Stored(e);
        _ringUsed -= stored;
        _ringStart = _ringUsed == 0 ? 0 : Wrap(_ringStart + stored, _ring.Length);
        _size -= e.Size;
        _held -= EntryOverhead + stored;
        if (e.NameLength >= 0 && e.ValueLength >= 0)
        {
            _knownCount--;
            _knownSize -= e.Size;
        }
        else _placeholders--;
        _oldest = Wrap(_oldest + 1, _entries.Length);
        if (--_count == 0) _oldest = 0;
    }

    private void Clear()
    {
        _oldest = _count = 0;
        _ringStart = _ringUsed = 0;
        _size = _held = 0;
        _knownCount = _knownSize = _placeholders = 0;
    }

    // Both arrays grow by doubling up to what the cap allows, so a quiet connection stays small and a
    // busy one stops allocating once its table has reached its working size.
    private void GrowEntries()
    {
        var length = Math.Min(Math.Max(8, _entries.Length * 2), Math.Max(1, _cap / EntryOverhead));
        var grown = new Entry[length];
        for (var i = 0; i < _count; i++) grown[i] = _entries[(_oldest + i) % _entries.Length];
        _entries = grown;
        _oldest = 0;
    }

    private void GrowRing(int needed)
    {
        var length = (int)Math.Min(Math.Max(Math.Max(256L, _ring.Length * 2L), needed), _cap);
        var grown = new byte[length];
        if (_ringUsed > 0) CopyOut(_ringStart, _ringUsed, grown);
        for (var i = 0; i < _count; i++)
        {
            ref var e = ref _entries[(_oldest + i) % _entries.Length];
            e.Offset = _ring.Length == 0 ? 0 : (e.Offset - _ringStart + _ring.Length) % _ring.Length;
        }
        _ring = grown;
        _ringStart = 0;
    }
}
