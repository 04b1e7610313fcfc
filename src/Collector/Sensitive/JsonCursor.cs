using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Text;

namespace Collector.Sensitive;

/// <summary>Walks a JSON body's structure forward, only as far as the next match: whether the
/// match is in a key, and the keys from the root to it. Lenient: it reads what is there, valid
/// or cut, and gives a path as good as the bytes allow.
///
/// It does not look at every byte: each 64-byte block is turned into bit masks (quotes not
/// escaped, and braces, brackets and colons outside strings, the string state carried from block
/// to block by a prefix XOR of the quotes), and only those positions are stepped through. A body
/// whose every record holds a finding is walked to its end, so a byte-by-byte walk had cost more
/// than finding the matches.</summary>
internal sealed class JsonCursor
{
    private const int MaxDepth = 64;
    private readonly (int Start, int Length, bool IsObject)[] _levels = new (int, int, bool)[MaxDepth];
    private int _depth, _stringStart, _lastStart, _lastLength;
    private bool _inString;

    // the path through each level (prefix.key.key…), known for the levels below _pathsKnown: a
    // level's key or a new level below makes it and those above unknown. The records of an array
    // share their parents' paths, so a finding's path is its parent's and one key, found by the
    // parent string and the key's bytes (Child), not spelled and hashed whole.
    private readonly string[] _pathThrough = new string[MaxDepth];
    private int _pathsKnown;
    private string? _pathsPrefix;
    private readonly TwoWayTable<(string? Parent, byte[]? Key, string Text)> _children = new(4096);

    // the block whose positions are being applied, and its positions not applied yet
    private int _block;
    private ulong _pending;
    // carried into the next block: inside a string at its first byte; its first byte escaped
    private bool _stringCarry, _escapeCarry;

    private static readonly bool Vectorized = Vector256.IsHardwareAccelerated || Vector128.IsHardwareAccelerated;

    public bool InString => _inString;

    public void Reset()
    {
        _depth = _stringStart = _lastStart = _lastLength = 0;
        _inString = _stringCarry = _escapeCarry = false;
        _block = -64;
        _pending = 0;
        _pathsKnown = 0;
    }

    /// <summary>Applies the structure before target (targets only grow between resets).</summary>
    public void AdvanceTo(ReadOnlySpan<byte> s, int target)
    {
        if (!Vectorized)
        {
            AdvanceByteByByte(s, target);
            return;
        }
        while (true)
        {
            while (_pending != 0)
            {
                var i = _block + BitOperations.TrailingZeroCount(_pending);
                if (i >= target) return;
                _pending &= _pending - 1;
                Apply(s, i);
            }
            var next = _block + 64;
            if (next >= target || next >= s.Length) return;
            _block = next;
            _pending = Positions(s, next);
        }
    }

    private void Apply(ReadOnlySpan<byte> s, int i)
    {
        switch (s[i])
        {
            case (byte)'"':
                if (_inString)
                {
                    _inString = false;
                    _lastStart = _stringStart;
                    _lastLength = i - _stringStart;
                }
                else
                {
                    _inString = true;
                    _stringStart = i + 1;
                }
                break;
            case (byte)'{':
            case (byte)'[':
                if (_depth < MaxDepth) _levels[_depth] = (-1, 0, s[i] == '{');
                if (_pathsKnown > _depth) _pathsKnown = _depth;
                _depth++;
                break;
            case (byte)'}':
            case (byte)']':
                if (_depth > 0) _depth--;
                break;
            case (byte)':':
                if (_depth > 0 && _depth <= MaxDepth && _levels[_depth - 1].IsObject)
                {
                    _levels[_depth - 1] = (_lastStart, _lastLength, true);
                    if (_pathsKnown > _depth - 1) _pathsKnown = _depth - 1;
                }
                break;
        }
    }

    /// <summary>The positions of the block at p to step through, one bit each: quotes that are not
    /// escaped, and { } [ ] : outside strings.</summary>
    private ulong Positions(ReadOnlySpan<byte> s, int p)
    {
        ulong quotes, backslashes, structure;
        if (p + 64 <= s.Length) (quotes, backslashes, structure) = Masks(ref Unsafe.Add(ref MemoryMarshal.GetReference(s), p));
        else
        {
            // the last bytes, padded with spaces (no class of their own)
            Span<byte> tail = stackalloc byte[64];
            tail.Fill((byte)' ');
            s[p..].CopyTo(tail);
            (quotes, backslashes, structure) = Masks(ref MemoryMarshal.GetReference(tail));
        }
        if (backslashes != 0 || _escapeCarry)
        {
            // a backslash in a string escapes the byte after it unless it is escaped itself:
            // rare in API bodies, so such a block's quotes and backslashes are stepped through
            // in order, as the byte walk would
            var inString = _stringCarry;
            var escaped = _escapeCarry ? 1UL : 0;
            _escapeCarry = false;
            ulong kept = 0;
            for (var b = quotes | backslashes; b != 0; b &= b - 1)
            {
                var i = BitOperations.TrailingZeroCount(b);
                var bit = 1UL << i;
                if ((escaped & bit) != 0) continue;
                if ((quotes & bit) != 0)
                {
                    kept |= bit;
                    inString = !inString;
                }
                else if (inString)
                {
                    if (i == 63) _escapeCarry = true;
                    else escaped |= bit << 1;
                }
            }
            quotes = kept;
        }
        // inside a string from its opening quote up to (not with) its closing quote
        var strings = PrefixXor(quotes) ^ (_stringCarry ? ulong.MaxValue : 0);
        _stringCarry = (strings >> 63) != 0;
        return quotes | (structure & ~strings);
    }

    private static ulong PrefixXor(ulong x)
    {
        x ^= x << 1;
        x ^= x << 2;
        x ^= x << 4;
        x ^= x << 8;
        x ^= x << 16;
        x ^= x << 32;
        return x;
    }

    private static (ulong Quotes, ulong Backslashes, ulong Structure) Masks(ref byte at)
    {
        if (Vector256.IsHardwareAccelerated)
        {
            var (q0, b0, s0) = Masks32(Vector256.LoadUnsafe(ref at));
            var (q1, b1, s1) = Masks32(Vector256.LoadUnsafe(ref at, 32));
            return (q0 | (ulong)q1 << 32, b0 | (ulong)b1 << 32, s0 | (ulong)s1 << 32);
        }
        ulong quotes = 0, backslashes = 0, structure = 0;
        for (var k = 0; k < 4; k++)
        {
            var v = Vector128.LoadUnsafe(ref at, (nuint)(16 * k));
            // '[' and ']' are '{' and '}' with the 0x20 bit clear: one compare each after setting it
            var folded = v | Vector128.Create((byte)0x20);
            quotes |= (ulong)Vector128.Equals(v, Vector128.Create((byte)'"')).ExtractMostSignificantBits() << (16 * k);
            backslashes |= (ulong)Vector128.Equals(v, Vector128.Create((byte)'\\')).ExtractMostSignificantBits() << (16 * k);
            structure |= (ulong)(Vector128.Equals(folded, Vector128.Create((byte)'{')) | Vector128.Equals(folded, Vector128.Create((byte)'}')) |
                                 Vector128.Equals(v, Vector128.Create((byte)':'))).ExtractMostSignificantBits() << (16 * k);
        }
        return (quotes, backslashes, structure);
    }

    private static (uint Quotes, uint Backslashes, uint Structure) Masks32(Vector256<byte> v)
    {
        var folded = v | Vector256.Create((byte)0x20);
        return (Vector256.Equals(v, Vector256.Create((byte)'"')).ExtractMostSignificantBits(),
            Vector256.Equals(v, Vector256.Create((byte)'\\')).ExtractMostSignificantBits(),
            (Vector256.Equals(folded, Vector256.Create((byte)'{')) | Vector256.Equals(folded, Vector256.Create((byte)'}')) |
             Vector256.Equals(v, Vector256.Create((byte)':'))).ExtractMostSignificantBits());
    }

    /// <summary>The same walk one byte at a time: where no vector unit is, and the reference the
    /// block walk is tested against.</summary>
    internal void AdvanceByteByByte(ReadOnlySpan<byte> s, int target)
    {
        // the byte walk keeps its place in _block (the next byte to read) once it has begun
        if (_block < 0) _block = 0;
        while (_block < target && _block < s.Length)
        {
            if (_inString)
            {
                var k = s[_block..Math.Min(target, s.Length)].IndexOfAny((byte)'"', (byte)'\\');
                if (k < 0)
                {
                    _block = target;
                    return;
                }
                _block += k;
                if (s[_block] == '\\')
                {
                    _block += 2;
                    continue;
                }
                Apply(s, _block++);
                continue;
            }
            var c = s[_block];
            if (c is (byte)'"' or (byte)'{' or (byte)'[' or (byte)'}' or (byte)']' or (byte)':') Apply(s, _block);
            _block++;
        }
    }

    /// <summary>prefix.key.key… of the match at offset (the cursor is there); a match in a
    /// key ends with that key and "#key".</summary>
    public string Path(string prefix, ReadOnlySpan<byte> s, int offset) =>
        InKey(s, offset, out var keyEnd) ? Spelled(prefix, s, isKey: true, keyEnd) : ValuePath(prefix, s);

    /// <summary>The same path spelled whole from the levels, as keys' paths are: the reference
    /// the tests hold the paths known from the levels to.</summary>
    internal string PathSpelled(string prefix, ReadOnlySpan<byte> s, int offset) =>
        Spelled(prefix, s, InKey(s, offset, out var keyEnd), keyEnd);

    /// <summary>Whether the match at offset is in a key: in a string whose closing quote a ':'
    /// follows (keyEnd: that quote).</summary>
    private bool InKey(ReadOnlySpan<byte> s, int offset, out int keyEnd)
    {
        keyEnd = 0;
        if (!_inString) return false;
        var p = offset;
        while (p < s.Length)
        {
            var k = s[p..].IndexOfAny((byte)'"', (byte)'\\');
            if (k < 0)
            {
                p = s.Length;
                break;
            }
            p += k;
            if (s[p] == '"') break;
            p += 2;
        }
        if (p > s.Length) p = s.Length;
        keyEnd = p;
        p++;
        while (p < s.Length && s[p] is (byte)' ' or (byte)'\t' or (byte)'\r' or (byte)'\n') p++;
        return p < s.Length && s[p] == ':';
    }

    /// <summary>The path of a value at the cursor: its parents' paths are known from the finding
    /// before unless a key or a level changed under them.</summary>
    private string ValuePath(string prefix, ReadOnlySpan<byte> s)
    {
        if (!ReferenceEquals(prefix, _pathsPrefix))
        {
            _pathsPrefix = prefix;
            _pathsKnown = 0;
        }
        var levels = Math.Min(_depth, MaxDepth);
        for (var d = _pathsKnown; d < levels; d++)
        {
            var parent = d == 0 ? prefix : _pathThrough[d - 1];
            var (start, length, isObject) = _levels[d];
            _pathThrough[d] = !isObject || start < 0 ? parent : Child(parent, s.Slice(start, length));
        }
        if (_pathsKnown < levels) _pathsKnown = levels;
        return levels == 0 ? prefix : _pathThrough[levels - 1];
    }

    /// <summary>parent.key, made once per parent string and key bytes.</summary>
    private string Child(string parent, ReadOnlySpan<byte> key)
    {
        var set = _children.SetOf(TwoWayTable.Hash(key, (ulong)RuntimeHelpers.GetHashCode(parent)));
        for (var way = 0; way < 2; way++)
        {
            ref var entry = ref _children.Way(set, way);
            if (ReferenceEquals(entry.Parent, parent) && key.SequenceEqual(entry.Key))
            {
                _children.Used(set, way);
                return entry.Text;
            }
        }
        var text = string.Concat(parent, ".", Encoding.UTF8.GetString(key));
        _children.Add(set, (parent, key.ToArray(), text));
        return text;
    }

    private string Spelled(string prefix, ReadOnlySpan<byte> s, bool isKey, int keyEnd)
    {
        // the path is spelled in bytes and its string looked up by them: a body's few paths are
        // made once, however many records repeat them
        _paths.Start();
        _paths.Append(prefix);
        var levels = Math.Min(_depth, MaxDepth);
        for (var d = 0; d < levels; d++)
        {
            var (start, length, isObject) = _levels[d];
            if (!isObject || start < 0 || (isKey && d == levels - 1)) continue;
            _paths.Append((byte)'.');
            _paths.Append(s.Slice(start, length));
        }
        if (isKey)
        {
            _paths.Append((byte)'.');
            _paths.Append(s[_stringStart..Math.Min(keyEnd, s.Length)]);
            _paths.Append("#key"u8);
        }
        return _paths.Spelled();
    }

    private readonly SpelledStrings _paths = new(4096);
}

/// <summary>Strings made from UTF-8 bytes once and looked up by the bytes after that (no UTF-16
/// copy to hash), in a <see cref="TwoWayTable{T}"/>: a body of records asks for the same few
/// paths once per record, and a dictionary of strings cost more than the rest of a finding. The
/// bytes are given whole (<see cref="Of"/>) or spelled piece by piece into a reused buffer
/// (<see cref="Start"/>, Append, <see cref="Spelled"/>).</summary>
internal sealed class SpelledStrings(int capacity)
{
    private readonly TwoWayTable<(byte[]? Bytes, string Text)> _table = new(capacity);
    private byte[] _spelling = new byte[256];
    private int _length;

    public string Of(ReadOnlySpan<byte> utf8)
    {
        var set = _table.SetOf(TwoWayTable.Hash(utf8));
        for (var way = 0; way < 2; way++)
        {
            ref var entry = ref _table.Way(set, way);
            if (entry.Bytes is not null && utf8.SequenceEqual(entry.Bytes))
            {
                _table.Used(set, way);
                return entry.Text;
            }
        }
        var text = Encoding.UTF8.GetString(utf8);
        _table.Add(set, (utf8.ToArray(), text));
        return text;
    }

    /// <summary>Begins a spelling in the buffer.</summary>
    public void Start() => _length = 0;

    public void Append(byte b) => Append([b]);

    public void Append(ReadOnlySpan<byte> bytes)
    {
        bytes.CopyTo(Room(bytes.Length));
        _length += bytes.Length;
    }

    public void Append(string text) => _length += Encoding.UTF8.GetBytes(text, Room(Encoding.UTF8.GetMaxByteCount(text.Length)));

    /// <summary>The string of what was spelled since <see cref="Start"/>.</summary>
    public string Spelled() => Of(_spelling.AsSpan(0, _length));

    private Span<byte> Room(int bytes)
    {
        if (_length + bytes > _spelling.Length) Array.Resize(ref _spelling, Math.Max(_spelling.Length * 2, _length + bytes));
        return _spelling.AsSpan(_length);
    }
}
