namespace Collector.Http2;

/// <summary>What a decoded header block reports, field by field, in order.</summary>
public interface IHpackHeaderSink
{
    /// <summary>A field. <paramref name="name"/> and <paramref name="value"/> are valid only during the
    /// call (they may point into the decoder's scratch, its table or the block).</summary>
    void OnHeader(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value);

    /// <summary>A field whose name or value cannot be known: a reference to a dynamic-table entry the
    /// decoder never saw (it joined the connection mid-stream or lost a header block), or one too big
    /// for its memory cap. When <paramref name="nameKnown"/> the name is set (the value is not).</summary>
    void OnUnknownField(ReadOnlySpan<byte> name, bool nameKnown);
}

/// <summary>HPACK (RFC 7541) decoder for one direction of one HTTP/2 connection, fed every header
/// block of that direction in order. Tolerates having missed blocks (see <see cref="MarkUnsynced"/>)
/// and hostile input: bounded memory, no exceptions out of <see cref="Decode"/>, and no allocation
/// per header once its buffers have grown to the traffic's working size.</summary>
public sealed class HpackDecoder
{
    private const string Truncated = "hpack_truncated";
    private const string BadIndex = "hpack_bad_index";
    private const string IntegerOverflow = "hpack_integer_overflow";
    private const string HuffmanError = "hpack_huffman";
    private const string StringTooLong = "hpack_string_too_long";
    private const string SizeUpdateOverLimit = "hpack_size_update_over_limit";
    private const string SizeUpdateMisplaced = "hpack_size_update_misplaced";

    // Keeps name + value scratch (2 × maxStringBytes) well inside an array's reach.
    private const int MaxStringBytesLimit = 1 << 28;

    private readonly int _maxStringBytes;
    private readonly HpackDynamicTable _table;

    // Huffman output and pieces of table entries that wrap around the ring: the name at 0, the value
    // right after it. Grows on demand up to 2 × maxStringBytes. Nothing in it outlives a Decode call,
    // so the decoders of a thread share one (it stays in cache; one per decoder is cold by the time
    // its connection's next block comes); set only during Decode.
    private byte[] _scratch = [];
    [ThreadStatic] private static byte[]? _threadScratch;
    [ThreadStatic] private static bool _threadScratchInUse;

    // Set while a block is being applied: still set on entry means the last sink threw half-way.
    private bool _inBlock;

    public HpackDecoder(int maxTableSizeCap = 65536, int maxStringBytes = 65536)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(maxTableSizeCap);
        ArgumentOutOfRangeException.ThrowIfNegative(maxStringBytes);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(maxStringBytes, MaxStringBytesLimit);
        _maxStringBytes = maxStringBytes;
        _table = new HpackDynamicTable(maxTableSizeCap);
    }

    /// <summary>False while the dynamic table may hold entries whose contents we do not know (after
    /// <see cref="MarkUnsynced"/>, an error, or entries beyond our cap). True again once the encoder's
    /// own evictions or size updates prove every such entry gone.</summary>
    public bool Synced => _table.Synced;

    /// <summary>Dynamic-table entries whose name and value we know.</summary>
    public int KnownEntries => _table.KnownEntries;

    /// <summary>RFC 7541 size (name + value + 32 per entry) of the known entries.</summary>
    public int TableSize => _table.KnownSize;

    /// <summary>The table's current maximum after size updates (the protocol maximum when not known
    /// since <see cref="MarkUnsynced"/>), bounded by our cap.</summary>
    public int MaxTableSize => _table.MaxSize;

    /// <summary>SETTINGS_HEADER_TABLE_SIZE announced by the endpoint that decodes this direction: the
    /// limit for the encoder's size updates. Our own cap still bounds memory.</summary>
    public void SetProtocolMaxTableSize(int size)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(size);
        _table.SetProtocolMax(size);
    }

    /// <summary>The table's earlier contents are unknown from now on (joined mid-connection, or a header
    /// block went by unseen). Entries inserted after this call are known again.</summary>
    public void MarkUnsynced() => _table.MarkUnsynced();

    /// <summary>Decodes one complete header block (HEADERS or PUSH_PROMISE plus CONTINUATION payloads,
    /// padding and priority removed), reporting each field to <paramref name="sink"/> as it goes.
    /// Returns null when the block decoded, else a short constant reason; after an error the decoder is
    /// unsynced, and fields before the error have been reported.</summary>
    public string? Decode(ReadOnlySpan<byte> block, IHpackHeaderSink sink)
    {
        if (_inBlock) _table.MarkUnsynced();
        _inBlock = true;
        // a sink that decodes another block while it is called gets a scratch of its own
        var shared = !_threadScratchInUse;
        if (shared)
        {
            _threadScratchInUse = true;
            _scratch = _threadScratch ?? [];
        }
        string? error;
        try
        {
            error = DecodeFields(block, sink);
        }
        finally
        {
            if (shared)
            {
                _threadScratch = _scratch;
                _threadScratchInUse = false;
            }
            _scratch = [];
        }
        if (error is not null) _table.MarkUnsynced();
        _inBlock = false;
        return error;
    }

    private string? DecodeFields(ReadOnlySpan<byte> block, IHpackHeaderSink sink)
    {
        var pos = 0;
        var fieldSeen = false;
        while (pos < block.Length)
        {
            var first = block[pos];
            string? error;
            if ((first & 0x80) != 0)
            {
                if ((error = ReadInteger(block, ref pos, 7, out var index)) is not null) return error;
                if ((error = Indexed(index, sink)) is not null) return error;
                fieldSeen = true;
            }
            else if ((first & 0x40) != 0)
            {
                if ((error = Literal(block, ref pos, 6, indexing: true, sink)) is not null) return error;
                fieldSeen = true;
            }
            else if ((first & 0x20) != 0)
            {
                // RFC 7541 4.2: only before the block's first field (several may follow each other there).
                if (fieldSeen) return SizeUpdateMisplaced;
                if ((error = ReadInteger(block, ref pos, 5, out var size)) is not null) return error;
                if (size > _table.ProtocolMax) return SizeUpdateOverLimit;
                _table.SizeUpdate(size);
            }
            else
            {
                // Without indexing (0000) and never indexed (0001) differ only for intermediaries.
                if ((error = Literal(block, ref pos, 4, indexing: false, sink)) is not null) return error;
                fieldSeen = true;
            }
        }
        return null;
    }

    private string? Indexed(int index, IHpackHeaderSink sink)
    {
        if (index == 0) return BadIndex;
        if (index <= HpackStaticTable.Count)
        {
            sink.OnHeader(HpackStaticTable.Name(index), HpackStaticTable.Value(index));
            return null;
        }
        switch (_table.Find(index - HpackStaticTable.Count, out var slot))
        {
            case HpackDynamicTable.Lookup.Known:
                var name = TableName(slot, out var used);
                sink.OnHeader(name, TableValue(slot, used));
                return null;
            case HpackDynamicTable.Lookup.NameOnly:
                sink.OnUnknownField(TableName(slot, out _), nameKnown: true);
                return null;
            case HpackDynamicTable.Lookup.Unknown:
                sink.OnUnknownField(default, nameKnown: false);
                return null;
            default:
                return BadIndex;
        }
    }

    private string? Literal(ReadOnlySpan<byte> block, scoped ref int pos, int prefixBits, bool indexing, IHpackHeaderSink sink)
    {
        var error = ReadInteger(block, ref pos, prefixBits, out var nameIndex);
        if (error is not null) return error;

        ReadOnlySpan<byte> name = default;
        var used = 0;
        var nameKnown = true;
        if (nameIndex == 0)
        {
            if ((error = ReadString(block, ref pos, 0, out name, out used)) is not null) return error;
        }
        else if (nameIndex <= HpackStaticTable.Count)
        {
            name = HpackStaticTable.Name(nameIndex);
        }
        else
        {
            switch (_table.Find(nameIndex - HpackStaticTable.Count, out var slot))
            {
                case HpackDynamicTable.Lookup.Known:
                case HpackDynamicTable.Lookup.NameOnly:
                    if (indexing)
                    {
                        // RFC 7541 4.4: inserting may evict the entry the name comes from, and the new
                        // bytes may land on the old ones; take the name out of the ring first.
                        used = _table.NameLength(slot);
                        var copy = Scratch(0, used);
                        _table.CopyName(slot, copy);
                        name = copy;
                    }
                    else name = TableName(slot, out used);
                    break;
                case HpackDynamicTable.Lookup.Unknown:
                    nameKnown = false;
                    break;
                default:
                    return BadIndex;
            }
        }

        if ((error = ReadString(block, ref pos, used, out var value, out _)) is not null) return error;

        if (nameKnown)
        {
            sink.OnHeader(name, value);
            if (indexing) _table.Insert(name, value);
        }
        else
        {
            sink.OnUnknownField(default, nameKnown: false);
            if (indexing) _table.InsertUnknownName(value.Length);
        }
        return null;
    }

    private ReadOnlySpan<byte> TableName(int slot, out int used)
    {
        if (_table.TryGetName(slot, out var name)) { used = 0; return name; }
        used = _table.NameLength(slot);
        var copy = Scratch(0, used);
        _table.CopyName(slot, copy);
        return copy;
    }

    private ReadOnlySpan<byte> TableValue(int slot, int scratchOffset)
    {
        if (_table.TryGetValue(slot, out var value)) return value;
        var copy = Scratch(scratchOffset, _table.ValueLength(slot));
        _table.CopyValue(slot, copy);
        return copy;
    }

    /// <summary>RFC 7541 5.1 integer with an N-bit prefix; the caller has checked pos is in the block.</summary>
    private static string? ReadInteger(ReadOnlySpan<byte> block, scoped ref int pos, int prefixBits, out int value)
    {
        var mask = (1 << prefixBits) - 1;
        value = block[pos++] & mask;
        if (value < mask) return null;
        long v = mask;
        for (var shift = 0; ; shift += 7)
        {
            // Five continuation bytes carry 35 bits, enough for any int; a sixth is only padding or attack.
            if (shift > 28) return IntegerOverflow;
            if (pos >= block.Length) return Truncated;
            var b = block[pos++];
            v += (long)(b & 0x7f) << shift;
            if (v > int.MaxValue) return IntegerOverflow;
            if ((b & 0x80) == 0)
            {
                value = (int)v;
                return null;
            }
        }
    }

    /// <summary>RFC 7541 5.2 string. A raw string is a slice of the block; a Huffman string is decoded
    /// into the scratch at <paramref name="scratchOffset"/> and <paramref name="used"/> says how much
    /// of it the string took.</summary>
    private string? ReadString(ReadOnlySpan<byte> block, scoped ref int pos, int scratchOffset, out ReadOnlySpan<byte> s, out int used)
    {
        s = default;
        used = 0;
        if (pos >= block.Length) return Truncated;
        var huffman = (block[pos] & 0x80) != 0;
        var error = ReadInteger(block, ref pos, 7, out var length);
        if (error is not null) return error;
        if (!huffman && length > _maxStringBytes) return StringTooLong;
        if (length > block.Length - pos) return Truncated;
        var encoded = block.Slice(pos, length);
        pos += length;
        if (!huffman)
        {
            s = encoded;
            return null;
        }

        // The shortest code is 5 bits, so 8/5 of the input bounds the output.
        var dst = Scratch(scratchOffset, (int)Math.Min(_maxStringBytes, length * 8L / 5));
        var n = Huffman.Decode(encoded, dst);
        if (n == -2) return StringTooLong;
        if (n < 0) return HuffmanError;
        s = dst[..n];
        used = n;
        return null;
    }

    /// <summary><paramref name="length"/> bytes of scratch at <paramref name="offset"/>, keeping what lies
    /// before it (a name decoded there earlier).</summary>
    private Span<byte> Scratch(int offset, int length)
    {
        var needed = offset + length;
        if (needed > _scratch.Length)
        {
            var grown = new byte[Math.Max(Math.Max(needed, 128), Math.Min(_scratch.Length * 2, 2 * _maxStringBytes))];
            _scratch.AsSpan(0, offset).CopyTo(grown);
            _scratch = grown;
        }
        return _scratch.AsSpan(offset, length);
    }
}
