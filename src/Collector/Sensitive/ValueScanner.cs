using System.Buffers;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Collector.Sensitive;

/// <summary>A match of a built-in category in a value: where it is (offsets into the value).</summary>
public readonly record struct ValueMatch(BuiltIn Category, int Start, int Length);

/// <summary>What a value is, besides its bytes.</summary>
[Flags]
public enum ValueKind : byte
{
    Text = 0,
    /// <summary>The raw bytes of a JSON string: backslash escapes are stepped over, never matched into.</summary>
    JsonEscaped = 1,
    /// <summary>A whole JSON number token.</summary>
    JsonNumber = 2,
    /// <summary>The value of an Authorization header: a Bearer credential is a finding by itself.</summary>
    Authorization = 4,
    /// <summary>A value under 64 bytes the caller has found may hold a match (its shape, from the
    /// masks of a region with no five dashes in a row): read token by token without being asked
    /// again, and not searched for a PEM line. Longer values are read by blocks whatever it says.</summary>
    MayHold = 8,
}

/// <summary>Asked for the hint of a token by its offset in the value scanned.</summary>
public interface IKeyHintSource
{
    KeyHint HintAt(ReadOnlySpan<byte> value, int offset);
}

/// <summary>The built-in detection over one value, in one pass over its bytes, with no regular
/// expression and no allocation: the value is cut into tokens at delimiters, a token that starts
/// like a number is read as digit groups and separators (cards, SSNs, phones, IPv4), any other
/// token is dispatched on its shape (length, which punctuation, which letters) to the one
/// validator that could accept it. Most tokens of real traffic (words, small numbers, ids) are
/// refused by their shape at a cost of a few compares.</summary>
[SkipLocalsInit]
public static class ValueScanner
{
    /// <summary>Bits of the built-in categories that are on (1 &lt;&lt; BuiltIn).</summary>
    public const uint AllBuiltIns = (1u << Categories.BuiltInCount) - 1;

    // bytes that end a token: controls and space, quotes, brackets, and the separators of lists,
    // query strings and cookies ('/' too: paths and URLs are cut into their segments)
    private static readonly bool[] Delimiter = MakeDelimiters();

    private static bool[] MakeDelimiters()
    {
        var d = new bool[256];
        for (var c = 0; c <= 0x20; c++) d[c] = true;
        foreach (var c in "\"'(),;<>[]{}|\\=&?#!`/*^~") d[c] = true;
        d[0x7f] = true;
        return d;
    }

    // a token can match only if it holds one of these: every category has a digit, a capital or
    // an '@' (a UUID's version nibble is a digit, a JWT starts "eyJ"): the rest is skipped by a
    // vectorized search, never looked at byte by byte
    private static readonly SearchValues<byte> Interesting = SearchValues.Create("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ@+"u8);

    private static readonly SearchValues<byte> HexColonDot = SearchValues.Create("0123456789abcdefABCDEF:."u8);
    private static readonly SearchValues<byte> UpperOrDigit = SearchValues.Create("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"u8);

    /// <summary>Appends the matches of the enabled categories in value to found. hint: what the
    /// value's name says; hints, when given, is asked instead, and only for a token whose
    /// category depends on it (a bare digit run, a dotted quad): a JSON body asks for the key in
    /// front of the token.</summary>
    public static void Scan(ReadOnlySpan<byte> value, KeyHint hint, ValueKind kind, uint enabled, List<ValueMatch> found,
        IKeyHintSource? hints = null, ReadOnlySpan<byte> name = default)
    {
        if (value.IsEmpty || (enabled & AllBuiltIns) == 0) return;
        var context = new Context(hint, hints, name, enabled, found);
        if ((kind & ValueKind.Authorization) != 0 && On(enabled, BuiltIn.BearerToken))
        {
            var lead = value.Length - value.TrimStart((byte)' ').Length;
            if (value.Length - lead > 7 && Http.HttpText.EqualsLower(value.Slice(lead, 7), "bearer "u8))
            {
                var tokenStart = value.Length - value[(lead + 7)..].TrimStart((byte)' ').Length;
                var token = value[tokenStart..].TrimEnd((byte)' ');
                if (token.Length > 0) found.Add(new ValueMatch(BuiltIn.BearerToken, tokenStart, token.Length));
            }
        }
        // a body read by 64-byte blocks looks for a PEM line in the same pass (five dashes in a
        // row, then the search below over the whole value); any other value is searched here
        var keysAt = found.Count;
        var keysPending = false;
        // (a value the caller found may hold a match was read with its region, which had no five dashes)
        if (On(enabled, BuiltIn.PrivateKey) && value.Length >= ShortestPemLine && (kind & ValueKind.MayHold) == 0)
        {
            if (WideBlocks && value.Length >= 64 && (kind & ValueKind.JsonNumber) == 0 && Vector256.IsHardwareAccelerated) keysPending = true;
            else PrivateKeys(value, found);
        }
        if ((kind & ValueKind.JsonNumber) != 0)
        {
            // a whole number: digits only (a sign, fraction or exponent makes it no identifier)
            if (value.IndexOfAnyExceptInRange((byte)'0', (byte)'9') >= 0) return;
            NumberToken(value, 0, in context);
            return;
        }
        var escaped = (kind & ValueKind.JsonEscaped) != 0;
        if (!Vector256.IsHardwareAccelerated || value.Length < 64)
        {
            // most header values and parameters hold nothing a token could match: one look at
            // their bytes says so, and no token is read
            if (value.Length >= 64 || (kind & ValueKind.MayHold) != 0 || MayHoldMatch(value))
                Tokens(value, 0, value.Length, escaped, in context);
            return;
        }
        // Long values (bodies): 32 bytes at a time (64 with AVX-512), a few vector operations say whether anything
        // there could be a match; only such blocks (and the tokens they cut) are read token by token
        var done = 0;
        var n = value.Length;
        ref var start = ref MemoryMarshal.GetReference(value);
        var p = 0;
        var state = new BlockState();
        if (WideBlocks)
        {
            // the same pre-filter 64 bytes at a time, its classes from table lookups (ClassesByTable),
            // in a loop of its own (NextBlock) that stops only at a block to read
            while (true)
            {
                p = keysPending ? NextBlock<Yes>(ref start, p, n, ref state, out var candidates, out var dashes)
                    : NextBlock<No>(ref start, p, n, ref state, out candidates, out dashes);
                if (p + 65 > n) break;
                if (dashes)
                {
                    // "-----BEGIN " starts with five dashes: a run of them ending here (the block
                    // before gives the first four) means the whole value is searched, as it would
                    // have been before the blocks; a value without one has no PEM line
                    keysPending = false;
                    KeysInFront(value, found, keysAt);
                }
                if (candidates != 0) done = Tokens(value, RegionStart(value, done, p - Margin), p + 64, escaped, in context);
                p += 64;
            }
        }
        else
        {
            uint prevRun = 0, prevWord = 0;
            for (; p + 33 <= n; p += 32)
            {
                var (run, word, at) = Classes(Vector256.LoadUnsafe(ref start, (nuint)p), Vector256.LoadUnsafe(ref start, (nuint)p + 1));
                var candidates = Candidates(prevRun, run, prevWord, word) | at;
                prevRun = run;
                prevWord = word;
                if (candidates == 0) continue;
                done = Tokens(value, RegionStart(value, done, p - Margin), p + 32, escaped, in context);
            }
        }
        // five dashes that end past the last block start at most four bytes before its end
        if (keysPending && value[Math.Max(0, p - 4)..].IndexOf("-----"u8) >= 0) KeysInFront(value, found, keysAt);
        if (p < n)
        {
            // the last bytes, too few for a block, with the tokens of the margin before them: by
            // the blocks' rule when they are 64 bytes (as one more block, zero past the end), else
            // by the shape check
            var from = RegionStart(value, done, p - Margin);
            if (WideBlocks ? LastBlockMayHold(value[p..], in state) : MayHoldMatch(value[from..])) Tokens(value, from, n, escaped, in context);
        }
    }

    /// <summary>Whether the last bytes of a value (fewer than 65) end a run a 64-byte block would
    /// stop at (<see cref="NextBlock"/>), the runs of the blocks before carried in.</summary>
    private static bool LastBlockMayHold(ReadOnlySpan<byte> last, in BlockState state)
    {
        Span<byte> block = stackalloc byte[64];
        ref var b = ref MemoryMarshal.GetReference(block);
        Vector512.StoreUnsafe(Vector512<byte>.Zero, ref b); // a zero byte is in no class
        last.CopyTo(block);
        var (run, word, at) = ClassesByTable(Vector512.LoadUnsafe(ref b), 0);
        return (RunEnds(run, state.Run, 7) | RunEnds(word, state.Word, 15) | at) != 0;
    }

    /// <summary>"-----BEGIN " and a label ending in "PRIVATE KEY" and "-----": shorter values hold no key.</summary>
    private const int ShortestPemLine = 27;

    // what MayHoldMatch asks of a byte, one bit each
    private const byte ShapeDigit = 1, ShapeSeparator = 2, ShapeWord = 4, ShapeIpv6 = 8, ShapeColon = 16, ShapeAt = 32, ShapeSpace = 64;
    private static readonly byte[] Shapes = MakeShapes();

    private static byte[] MakeShapes()
    {
        var shapes = new byte[256];
        foreach (var c in "0123456789"u8) shapes[c] |= ShapeDigit | ShapeWord | ShapeIpv6;
        foreach (var c in "-.()"u8) shapes[c] |= ShapeSeparator;
        for (var c = 'a'; c <= 'z'; c++) shapes[c] = shapes[c - 32] = ShapeWord;
        foreach (var c in "-._:"u8) shapes[c] |= ShapeWord;
        foreach (var c in "abcdefABCDEF:."u8) shapes[c] |= ShapeIpv6;
        shapes[':'] |= ShapeColon;
        shapes['@'] = ShapeAt;
        shapes[' '] = ShapeSpace;
        return shapes;
    }

    /// <summary>Whether reading s token by token (<see cref="Tokens"/>) could find anything. No,
    /// when s holds no byte a token starts from, or when it holds no '@', no 7 bytes of a number
    /// (digits and the separators a number token takes: a space only where a digit follows it,
    /// alone or after one more separator), no 15 bytes of a word, and no run of hex digits, ':'
    /// and '.' with two colons (an IPv6 address of any length). Every match of a token has one
    /// of these, so a no here skips only what holds nothing.</summary>
    internal static bool MayHoldMatch(ReadOnlySpan<byte> s) =>
        !TooShortToMatch(s) &&
        (s.Length < 7 || !MasksAccelerated || s.Length > 128 ? MayHoldMatchByteByByte(s) : s.Length <= 64 ? MayHoldMatchIn64(s) : MayHoldMatchByMasks(s));

    /// <summary>Whether s is too short for a number or a word (under 7 bytes) and holds no '@' or
    /// ':' (an email, an IPv6 form): then nothing a built-in matches can be in it.</summary>
    internal static bool TooShortToMatch(ReadOnlySpan<byte> s) => s.Length < 7 && s.IndexOfAny((byte)'@', (byte)':') < 0;

    private static readonly bool MasksAccelerated = Vector512.IsHardwareAccelerated;

    /// <summary><see cref="MayHoldMatch"/> over at most 64 bytes (most header values and
    /// parameters), from bit masks of the byte classes: one vector of the bytes, zero past the
    /// end (a zero byte is in no class, as nothing is past the end), instead of a step per byte.</summary>
    internal static bool MayHoldMatchIn64(ReadOnlySpan<byte> s)
    {
        Span<byte> buffer = stackalloc byte[64];
        ref var b = ref MemoryMarshal.GetReference(buffer);
        Vector512.StoreUnsafe(Vector512<byte>.Zero, ref b);
        s.CopyTo(buffer);
        var v = Vector512.LoadUnsafe(ref b);
        // most values with nothing (a media type, an encoding, keep-alive) have no byte a token
        // starts from: asked first, before the other classes are worked out
        if ((Vector512.LessThan(v - Vector512.Create((byte)'0'), Vector512.Create((byte)10)) |
             Vector512.LessThan(v - Vector512.Create((byte)'A'), Vector512.Create((byte)26)) |
             Vector512.Equals(v, Vector512.Create((byte)'@')) | Vector512.Equals(v, Vector512.Create((byte)'+'))) == Vector512<byte>.Zero)
            return false;
        var m = Masks(v);
        return Decide(m.Interesting, m.At, m.Number, m.SepOrSpace, m.Space, m.Digit, m.Word, m.Ipv6, m.Colon);
    }

    /// <summary><see cref="MayHoldMatch"/> for the values of at most 64 bytes that lie in one
    /// region (a message's header fields, one after another): the class masks of the whole
    /// region made once, 64 bytes at a time, and each value's answer read from its own bits. A
    /// message's dozen header values had cost a vector load, a copy and a dozen compares each.
    /// Only where 64-byte vectors are (<see cref="Accelerated"/>).</summary>
    internal sealed class RegionMasks
    {
        /// <summary>The longest region read so (header blocks beyond it are rare; their values are
        /// asked one by one), which bounds what the masks keep.</summary>
        public const int MaxRegionBytes = 16 * 1024;
        private ClassMasks[] _blocks = new ClassMasks[16];
        private int _count;
        private static readonly ClassMasks None = default;

        public static bool Accelerated => MasksAccelerated;

        /// <summary>Five dashes in a row somewhere in the region: a PEM line may be there.</summary>
        public bool FiveDashes { get; private set; }

        /// <summary>Reads region; false (and nothing read) when it is longer than <see cref="MaxRegionBytes"/>.</summary>
        public bool Load(ReadOnlySpan<byte> region)
        {
            if (region.Length > MaxRegionBytes) return false;
            _count = (region.Length + 63) / 64;
            if (_blocks.Length < _count) _blocks = new ClassMasks[Math.Max(_count, _blocks.Length * 2)];
            ref var start = ref MemoryMarshal.GetReference(region);
            var full = region.Length / 64;
            ulong dashes = 0, prevDash = 0;
            for (var b = 0; b < full; b++)
            {
                var v = Vector512.LoadUnsafe(ref start, (nuint)(64 * b));
                _blocks[b] = Masks(v);
                var dash = Vector512.Equals(v, Vector512.Create((byte)'-')).ExtractMostSignificantBits();
                dashes |= FiveDashesEnd(dash, prevDash) ? 1UL : 0;
                prevDash = dash;
            }
            if (full < _count)
            {
                // the last bytes, zero past them (a zero byte is in no class)
                Span<byte> tail = stackalloc byte[64];
                tail.Clear();
                region[(64 * full)..].CopyTo(tail);
                var v = Vector512.LoadUnsafe(ref MemoryMarshal.GetReference(tail));
                _blocks[full] = Masks(v);
                dashes |= FiveDashesEnd(Vector512.Equals(v, Vector512.Create((byte)'-')).ExtractMostSignificantBits(), prevDash) ? 1UL : 0;
            }
            FiveDashes = dashes != 0;
            return true;
        }

        /// <summary><see cref="MayHoldMatch"/> of the length bytes (1 to 64) at offset of the region.</summary>
        public bool MayHoldMatch(int offset, int length)
        {
            var w = offset >> 6;
            var shift = offset & 63;
            var keep = length >= 64 ? ulong.MaxValue : (1UL << length) - 1;
            ref readonly var lo = ref _blocks[w];
            ref readonly var hi = ref w + 1 < _count ? ref _blocks[w + 1] : ref None;
            ulong Bits(ulong low, ulong high) => (shift == 0 ? low : low >> shift | high << (64 - shift)) & keep;
            var interesting = Bits(lo.Interesting, hi.Interesting);
            if (interesting == 0) return false;
            return Decide(interesting, Bits(lo.At, hi.At), Bits(lo.Number, hi.Number), Bits(lo.SepOrSpace, hi.SepOrSpace),
                Bits(lo.Space, hi.Space), Bits(lo.Digit, hi.Digit), Bits(lo.Word, hi.Word), Bits(lo.Ipv6, hi.Ipv6), Bits(lo.Colon, hi.Colon));
        }
    }

    /// <summary><see cref="MayHoldMatchIn64"/> over 65 to 128 bytes (the end of a body after its
    /// last block, with the margin before it): two vectors, 128-bit masks.</summary>
    internal static bool MayHoldMatchByMasks(ReadOnlySpan<byte> s)
    {
        Span<byte> buffer = stackalloc byte[128];
        ref var b = ref MemoryMarshal.GetReference(buffer);
        Vector512.StoreUnsafe(Vector512<byte>.Zero, ref b, 64);
        if (s.Length < 64) Vector512.StoreUnsafe(Vector512<byte>.Zero, ref b);
        s.CopyTo(buffer);
        var l = Masks(Vector512.LoadUnsafe(ref b));
        var h = Masks(Vector512.LoadUnsafe(ref b, 64));
        static UInt128 Join(ulong low, ulong high) => (UInt128)high << 64 | low;
        return Decide(Join(l.Interesting, h.Interesting), Join(l.At, h.At), Join(l.Number, h.Number), Join(l.SepOrSpace, h.SepOrSpace),
            Join(l.Space, h.Space), Join(l.Digit, h.Digit), Join(l.Word, h.Word), Join(l.Ipv6, h.Ipv6), Join(l.Colon, h.Colon));
    }

    /// <summary>MayHoldMatch's answer from the class masks of the bytes (bit i: byte i).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool Decide<T>(T interesting, T at, T number, T sepOrSpace, T space, T digit, T word, T ipv6, T colon)
        where T : struct, IBinaryInteger<T>, IUnsignedNumber<T>
    {
        if (interesting == T.Zero) return false;
        if (at != T.Zero) return true;
        // a space is a number byte when a digit follows it, or a separator or space and then a digit
        number |= space & (digit >> 1 | sepOrSpace >> 1 & digit >> 2);
        var t = number & number << 1;
        t &= t << 2;
        if ((t & t << 3) != T.Zero) return true; // 7 in a row
        var u = word & word << 1;
        u &= u << 2;
        u &= u << 4;
        if ((u & u << 7) != T.Zero) return true; // 15 in a row
        // two colons in one run of hex digits, ':' and '.': every byte from one colon to the next is in the run
        var bits = int.CreateTruncating(T.PopCount(T.AllBitsSet));
        var prev = -1;
        while (colon != T.Zero)
        {
            var i = int.CreateTruncating(T.TrailingZeroCount(colon));
            if (prev >= 0)
            {
                var between = T.AllBitsSet >>> (bits - 1 - (i - prev)) << prev;
                if ((ipv6 & between) == between) return true;
            }
            prev = i;
            colon &= colon - T.One;
        }
        return false;
    }

    /// <summary>The classes of 64 bytes that MayHoldMatch counts, one bit per byte (a space in
    /// number only as a separator, not yet).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ClassMasks Masks(Vector512<byte> v)
    {
        var digit = Vector512.LessThan(v - Vector512.Create((byte)'0'), Vector512.Create((byte)10));
        var upper = Vector512.LessThan(v - Vector512.Create((byte)'A'), Vector512.Create((byte)26));
        var letter = Vector512.LessThan((v | Vector512.Create((byte)0x20)) - Vector512.Create((byte)'a'), Vector512.Create((byte)26));
        var hexLetter = Vector512.LessThan((v | Vector512.Create((byte)0x20)) - Vector512.Create((byte)'a'), Vector512.Create((byte)6));
        var dashDot = Vector512.LessThan(v - Vector512.Create((byte)'-'), Vector512.Create((byte)2));
        var paren = Vector512.LessThan(v - Vector512.Create((byte)'('), Vector512.Create((byte)2));
        var colon = Vector512.Equals(v, Vector512.Create((byte)':'));
        var at = Vector512.Equals(v, Vector512.Create((byte)'@'));
        var space = Vector512.Equals(v, Vector512.Create((byte)' '));
        var plus = Vector512.Equals(v, Vector512.Create((byte)'+'));
        var underscore = Vector512.Equals(v, Vector512.Create((byte)'_'));
        var dot = Vector512.Equals(v, Vector512.Create((byte)'.'));
        var sep = dashDot | paren;
        return new ClassMasks((digit | upper | at | plus).ExtractMostSignificantBits(), at.ExtractMostSignificantBits(),
            (digit | sep).ExtractMostSignificantBits(), (sep | space).ExtractMostSignificantBits(), space.ExtractMostSignificantBits(),
            digit.ExtractMostSignificantBits(), (digit | letter | dashDot | underscore | colon).ExtractMostSignificantBits(),
            (digit | hexLetter | colon | dot).ExtractMostSignificantBits(), colon.ExtractMostSignificantBits());
    }

    private readonly record struct ClassMasks(ulong Interesting, ulong At, ulong Number, ulong SepOrSpace, ulong Space, ulong Digit, ulong Word,
        ulong Ipv6, ulong Colon);

    /// <summary><see cref="MayHoldMatch"/> a byte at a time: longer values, and machines without
    /// 64-byte vectors.</summary>
    internal static bool MayHoldMatchByteByByte(ReadOnlySpan<byte> s)
    {
        if (s.IndexOfAny(Interesting) < 0) return false;
        int number = 0, word = 0, colons = 0;
        ref var shapes = ref MemoryMarshal.GetArrayDataReference(Shapes);
        for (var i = 0; i < s.Length; i++)
        {
            var shape = Unsafe.Add(ref shapes, s[i]);
            if ((shape & (ShapeAt | ShapeSpace)) != 0)
            {
                if (shape == ShapeAt) return true;
                if (SpaceInNumber(s, i)) shape = ShapeSeparator;
            }
            // counted without branches: the bytes of text come in no order a predictor learns
            number = (shape & (ShapeDigit | ShapeSeparator)) != 0 ? number + 1 : 0;
            word = (shape & ShapeWord) != 0 ? word + 1 : 0;
            colons = (shape & ShapeIpv6) != 0 ? colons + (shape >> 4 & 1) : 0;
            if ((number >= 7) | (word >= 15) | (colons >= 2)) return true;
        }
        return false;
    }

    /// <summary>Whether the space at i could be in a number token: a digit follows it, or a
    /// separator and then a digit (groups are split by at most two separators).</summary>
    private static bool SpaceInNumber(ReadOnlySpan<byte> s, int i) =>
        i + 1 < s.Length && (Validators.IsDigit(s[i + 1]) ||
                             (Shapes[s[i + 1]] & (ShapeSeparator | ShapeSpace)) != 0 && i + 2 < s.Length && Validators.IsDigit(s[i + 2]));

    /// <summary>The token-by-token reading over the whole value, without the vector pre-filter
    /// (tests: whatever the pre-filter skips must be what this finds nothing in).</summary>
    internal static void ScanEveryToken(ReadOnlySpan<byte> value, ValueKind kind, uint enabled, List<ValueMatch> found, KeyHint hint = KeyHint.None)
    {
        var context = new Context(hint, null, default, enabled, found);
        if (On(enabled, BuiltIn.PrivateKey)) PrivateKeys(value, found);
        Tokens(value, 0, value.Length, (kind & ValueKind.JsonEscaped) != 0, in context);
    }

    /// <summary>Whether the pre-filter reads 64-byte blocks (AVX-512) rather than 32-byte ones;
    /// tests set it to check both against the token-by-token reading.</summary>
    internal static bool WideBlocks = Vector512.IsHardwareAccelerated && Avx512BW.IsSupported;

    /// <summary>How far before a block its tokens are read again: the longest number a validator
    /// takes (19 digits and their separators) fits, so a run seen late is read from its start.</summary>
    private const int Margin = 40;

    /// <summary>Where reading resumes: from, moved back to the start of its token, not before done.</summary>
    private static int RegionStart(ReadOnlySpan<byte> value, int done, int from)
    {
        if (from <= done) return done;
        while (from > done && !Delimiter[value[from - 1]]) from--;
        return from;
    }

    // Byte classes looked up by nibble (ClassesByTable): a byte is in a class when the class's
    // bit is set both in the entry of its low nibble and in that of its high nibble. Only the
    // ASCII rows 2-7 have entries, so bytes from 0x80 up are in none.
    private const byte ClassDigit = 1, ClassColon = 2, ClassLetterLow = 4, ClassLetterHigh = 8, ClassUnderscore = 16,
        ClassDashDot = 32, ClassParen = 64, ClassAt = 128;

    // rows 2 ('(' ')' '-' '.'), 3 (digits, ':'), 4 and 6 ('@', A-O, a-o), 5 and 7 (P-Z, p-z, '_')
    private static readonly Vector512<byte> HighNibbleClasses = Vector512.Create(Vector128.Create(
        0, 0, ClassDashDot | ClassParen, ClassDigit | ClassColon, ClassLetterLow | ClassAt,
        ClassLetterHigh | ClassUnderscore, ClassLetterLow, ClassLetterHigh, 0, 0, 0, 0, 0, 0, 0, (byte)0));

    // columns 0-9 digits ('@' 'P' 'p' in column 0), 1-F A-O and a-o, 0-A P-Z and p-z, A ':',
    // 8-9 '(' ')', D-E '-' '.', F '_'
    private static readonly Vector512<byte> LowNibbleClasses = Vector512.Create(Vector128.Create(
        ClassDigit | ClassLetterHigh | ClassAt,
        ClassDigit | ClassLetterLow | ClassLetterHigh, ClassDigit | ClassLetterLow | ClassLetterHigh,
        ClassDigit | ClassLetterLow | ClassLetterHigh, ClassDigit | ClassLetterLow | ClassLetterHigh,
        ClassDigit | ClassLetterLow | ClassLetterHigh, ClassDigit | ClassLetterLow | ClassLetterHigh,
        ClassDigit | ClassLetterLow | ClassLetterHigh,
        ClassDigit | ClassLetterLow | ClassLetterHigh | ClassParen, ClassDigit | ClassLetterLow | ClassLetterHigh | ClassParen,
        ClassColon | ClassLetterLow | ClassLetterHigh,
        ClassLetterLow, ClassLetterLow,
        ClassLetterLow | ClassDashDot, ClassLetterLow | ClassDashDot,
        (byte)(ClassLetterLow | ClassUnderscore)));

    /// <summary>The classes of <see cref="Classes"/> over 64 bytes (following: the byte after
    /// them), from two table lookups per byte instead of a dozen range compares: this is most of
    /// what a body with nothing in it costs.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static (ulong Run, ulong Word, ulong At) ClassesByTable(Vector512<byte> v, byte following)
    {
        var high = Vector512.ShiftRightLogical(v.AsUInt16(), 4).AsByte() & Vector512.Create((byte)0x0F);
        // a byte from 0x80 up has its top bit set, and the lookup gives 0 for it
        var classes = Avx512BW.Shuffle(LowNibbleClasses, v) & Avx512BW.Shuffle(HighNibbleClasses, high);
        // (a class's bytes: those whose class bits are above zero, one compare into a mask each)
        var zero = Vector512<byte>.Zero;
        var run = Vector512.GreaterThan(classes & Vector512.Create((byte)(ClassDigit | ClassDashDot | ClassParen)), zero).ExtractMostSignificantBits();
        var word = Vector512.GreaterThan(classes & Vector512.Create((byte)(ClassDigit | ClassColon | ClassLetterLow | ClassLetterHigh | ClassUnderscore | ClassDashDot)), zero)
            .ExtractMostSignificantBits();
        var at = Vector512.GreaterThan(classes & Vector512.Create(ClassAt), zero).ExtractMostSignificantBits();
        // a space counts when a digit or a parenthesis follows it (the byte after the block for the last)
        var digitOrParen = Vector512.GreaterThan(classes & Vector512.Create((byte)(ClassDigit | ClassParen)), zero).ExtractMostSignificantBits();
        // (the byte after by a table, not compares: in text whether it is a digit comes in no order a predictor learns)
        var digitOrParenNext = digitOrParen >> 1 | (ulong)DigitOrParen[following] << 63;
        run |= Vector512.Equals(v, Vector512.Create((byte)' ')).ExtractMostSignificantBits() & digitOrParenNext;
        return (run, word, at);
    }

    /// <summary>1 for a digit or a parenthesis, by byte.</summary>
    private static ReadOnlySpan<byte> DigitOrParen =>
    [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];

    /// <summary>Whether five dashes in a row end in a 64-byte block (dash: its dashes, one bit per
    /// byte; prev: the block before's).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool FiveDashesEnd(ulong dash, ulong prev)
    {
        var two = dash & (dash << 1 | prev >> 63); // two in a row first: JSON's dashes mostly stand alone
        return two != 0 && (two & (dash << 2 | prev >> 62) & (dash << 3 | prev >> 61) & (dash << 4 | prev >> 60)) != 0;
    }

    /// <summary>What the 64-byte blocks carry from one to the next: the run and token bytes of
    /// the block before (the runs that end there reach into the next), and its dashes.</summary>
    private struct BlockState
    {
        public ulong Run, Word, Dash;
    }

    /// <summary>From the block at p on, the first block with a candidate (<see
    /// cref="Candidates(uint, uint, uint, uint)"/> over 64-byte blocks), or with the end of five
    /// dashes while keys are pending (TDashes): its start, or the first p with p + 65 &gt; n when there is none.
    /// Apart from Scan, so that the blocks with nothing, most of a body, are read with every
    /// value in a register.</summary>
    private static int NextBlock<TDashes>(ref byte start, int p, int n, ref BlockState state, out ulong candidates, out bool dashes)
        where TDashes : struct, IFlag
    {
        var (pRun, pWord, prevDash) = (state.Run, state.Word, state.Dash);
        ulong found = 0;
        var five = false;
        for (; p + 65 <= n; p += 64)
        {
            var v = Vector512.LoadUnsafe(ref start, (nuint)p);
            if (TDashes.On)
            {
                var dash = Vector512.Equals(v, Vector512.Create((byte)'-')).ExtractMostSignificantBits();
                five = FiveDashesEnd(dash, prevDash);
                prevDash = dash;
            }
            var (run, word, at) = ClassesByTable(v, Unsafe.Add(ref start, p + 64));
            found = RunEnds(run, pRun, 7) | RunEnds(word, pWord, 15) | at;
            (pRun, pWord) = (run, word);
            if ((found != 0) | five) break;
        }
        state = new BlockState { Run = pRun, Word = pWord, Dash = prevDash };
        candidates = found;
        dashes = five;
        return p;
    }

    /// <summary>Not zero when a run of at least length (7 or 15) set bits of bits ends in this
    /// block: the ends of those within it (ands of the bits shifted by 1, 2, then 3, or 4 and 7),
    /// and bit 0 for one that began in the block before (the bits it ends with, prev's leading
    /// ones, and those this block starts with, its trailing ones, add up to length).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ulong RunEnds(ulong bits, ulong prev, int length)
    {
        var t = bits & bits << 1;
        t &= t << 2;
        if (length == 7) t &= t << 3;
        else
        {
            t &= t << 4;
            t &= t << 7;
        }
        // (in arithmetic, not branches: whether a block starts in a run is as good as a coin toss in text)
        var head = (long)BitOperations.TrailingZeroCount(~bits);
        var total = head + BitOperations.LeadingZeroCount(~prev) - length; // not negative: long enough
        var across = bits & (ulong)~total >> 63; // (bits & 1: the block starts in the run)
        return t | (across & 1);
    }

    /// <summary>A choice made when a generic method is compiled (one body each, the other branch gone).</summary>
    private interface IFlag
    {
        static abstract bool On { get; }
    }

    private readonly struct Yes : IFlag
    {
        public static bool On => true;
    }

    private readonly struct No : IFlag
    {
        public static bool On => false;
    }

    /// <summary>The classes of 32 bytes (v; next: the same bytes one further), one bit each:
    /// digits and number separators (run; a space counts when a digit or a parenthesis follows it, as
    /// between card groups, and not in indentation), token bytes (word: letters, digits, - . _ :),
    /// and '@'.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static (uint Run, uint Word, uint At) Classes(Vector256<byte> v, Vector256<byte> next)
    {
        var digit = Vector256.LessThan(v - Vector256.Create((byte)'0'), Vector256.Create((byte)10));
        var letter = Vector256.LessThan((v | Vector256.Create((byte)0x20)) - Vector256.Create((byte)'a'), Vector256.Create((byte)26));
        // '-' '.' (0x2d 0x2e) and '(' ')' (0x28 0x29): two ranges of two
        var dashDot = Vector256.LessThan(v - Vector256.Create((byte)'-'), Vector256.Create((byte)2));
        var paren = Vector256.LessThan(v - Vector256.Create((byte)'('), Vector256.Create((byte)2));
        var digitOrParenNext = Vector256.LessThan(next - Vector256.Create((byte)'0'), Vector256.Create((byte)10)) |
                               Vector256.LessThan(next - Vector256.Create((byte)'('), Vector256.Create((byte)2));
        var spaceBeforeDigit = Vector256.Equals(v, Vector256.Create((byte)' ')) & digitOrParenNext;
        var run = digit | dashDot | paren | spaceBeforeDigit;
        var word = digit | letter | dashDot | Vector256.Equals(v, Vector256.Create((byte)'_')) | Vector256.Equals(v, Vector256.Create((byte)':'));
        return (run.ExtractMostSignificantBits(), word.ExtractMostSignificantBits(),
            Vector256.Equals(v, Vector256.Create((byte)'@')).ExtractMostSignificantBits());
    }

    /// <summary>Bits of the current block (the high half of a 64-byte window with the block
    /// before) where something could match: the end of 7 bytes of digits and number separators
    /// (cards, SSNs, phones, dotted quads), or the end of 15 token bytes (JWT, UUID, VIN, IBAN,
    /// AWS keys, IPv6 of 15 characters or more; shorter IPv6 forms are found in headers and
    /// fields, not in bodies).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static uint Candidates(uint prevRun, uint run, uint prevWord, uint word)
    {
        var m = (ulong)run << 32 | prevRun;
        var t = m & (m << 1);
        t &= t << 2;
        var run7 = t & (t << 3);
        var w = (ulong)word << 32 | prevWord;
        var u = w & (w << 1);
        u &= u << 2;
        u &= u << 4;
        var word15 = u & (u << 7);
        return (uint)((run7 | word15) >> 32);
    }

    /// <summary>Reads the tokens that hold an interesting byte in [from, to) (the last may run
    /// past to) and returns the end of the last one read (from when none).</summary>
    private static int Tokens(ReadOnlySpan<byte> value, int from, int to, bool escaped, in Context context)
    {
        var n = value.Length;
        var i = from;
        while (i < to)
        {
            var next = value[i..to].IndexOfAny(Interesting);
            // nothing more here: the next region goes on from the last token read, so that a token
            // cut by `to` is read whole from its start
            if (next < 0) return i;
            var at = i + next;
            // the token holding it starts after the last delimiter before it
            var start = at;
            // (a ':' ends it too: "key":4111… in JSON, mailto:, host:port; IPv6 starts at its first digit or letter)
            while (start > i && !Delimiter[value[start - 1]] && value[start - 1] != ':') start--;
            if (escaped && start > 0 && value[start - 1] == '\\')
            {
                // an escape sequence is stepped over whole, so that no match starts inside one (\n4111…, \u0040)
                var skip = value[start] == 'u' ? 5 : 1;
                if (start + skip > at)
                {
                    i = start + skip;
                    continue;
                }
                start += skip;
            }
            var c = value[start];
            if (start > i && value[start - 1] == '(' && Validators.IsDigit(c)) c = value[--start]; // (415) 555-2671
            if (Validators.IsDigit(c) || c is (byte)'+' or (byte)'(')
            {
                var end = NumberToken(value, start, in context);
                if (end > start)
                {
                    i = end;
                    continue;
                }
                if (c == '(')
                {
                    i = start + 1; // not a number with its parenthesis: read again without it
                    continue;
                }
            }
            var wordEnd = at + 1;
            while (wordEnd < n && !Delimiter[value[wordEnd]]) wordEnd++;
            Word(value, start, wordEnd, in context);
            i = wordEnd;
        }
        return i;
    }

    /// <summary>What a scan carries from token to token.</summary>
    private readonly ref struct Context(KeyHint hint, IKeyHintSource? hints, ReadOnlySpan<byte> name, uint enabled, List<ValueMatch> found)
    {
        public readonly uint Enabled = enabled;
        public readonly List<ValueMatch> Found = found;
        private readonly ReadOnlySpan<byte> _name = name;

        /// <summary>The hint for the token at offset of value, worked out only when it decides:
        /// from the hint source, else from the value's name, else the hint given.</summary>
        public KeyHint HintAt(ReadOnlySpan<byte> value, int offset) =>
            hints?.HintAt(value, offset) ?? (_name.IsEmpty ? hint : hint | KeyHints.Of(_name));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool On(uint enabled, BuiltIn c) => (enabled & (1u << (int)c)) != 0;

    /// <summary>The private keys of value placed in found at index at, where the search before
    /// the tokens would have put them: found lists them in the same order either way.</summary>
    private static void KeysInFront(ReadOnlySpan<byte> value, List<ValueMatch> found, int at)
    {
        var before = found.Count;
        PrivateKeys(value, found);
        if (found.Count == before || before == at) return;
        var keys = found.GetRange(before, found.Count - before);
        found.RemoveRange(before, keys.Count);
        found.InsertRange(at, keys);
    }

    private static void PrivateKeys(ReadOnlySpan<byte> value, List<ValueMatch> found)
    {
        var from = 0;
        while (true)
        {
            var begin = value[from..].IndexOf("-----BEGIN "u8);
            if (begin < 0) return;
            begin += from;
            var line = value[begin..];
            var close = line[11..].IndexOf("-----"u8);
            if (close < 0 || close > 40) return;
            var label = line[11..(11 + close)];
            from = begin + 16 + close;
            if (!label.EndsWith("PRIVATE KEY"u8)) continue;
            // the block up to its END line, or the BEGIN line alone when the END is not here (a cut body)
            var end = value[from..].IndexOf("-----END "u8);
            var length = 16 + close;
            if (end >= 0)
            {
                var endClose = value[(from + end + 9)..].IndexOf("-----"u8);
                if (endClose >= 0) length = from + end + 9 + endClose + 5 - begin;
            }
            found.Add(new ValueMatch(BuiltIn.PrivateKey, begin, length));
            from = begin + length;
        }
    }

    /// <summary>Reads digit groups from i: digits, and between them at most two of space, '-', '.',
    /// '(' and ')' (a leading '+' or '(' too). Returns the end of what it matched, or i when
    /// the token is not a number the validators want (the caller then reads it as a word).
    /// Most numbers of real traffic (ids, counts, prices) are refused on their digit count before
    /// anything is copied.</summary>
    private static int NumberToken(ReadOnlySpan<byte> s, int i, in Context cx)
    {
        var groups = 0;
        ulong groupLengths = 0; // 8 bits per group, the first in the lowest byte
        var count = 0;
        var p = i;
        var plus = s[p] == '+';
        if (plus) p++;
        var open = p < s.Length && s[p] == '(';
        if (open) p++;
        byte sep = 0;          // the separator between groups when all are the same, 0xff when mixed
        var lastDigitEnd = p;
        while (p < s.Length)
        {
            var start = p;
            while (p < s.Length && Validators.IsDigit(s[p])) p++;
            if (p == start) break;
            count += p - start;
            if (count > 19 || groups == 8) return i; // longer than any number here: an id
            groupLengths |= (ulong)(p - start) << (8 * groups++);
            lastDigitEnd = p;
            var sepStart = p;
            while (p < s.Length && p - sepStart < 2 && s[p] is (byte)' ' or (byte)'-' or (byte)'.' or (byte)'(' or (byte)')') p++;
            if (p == sepStart || p == s.Length || !Validators.IsDigit(s[p])) break;
            var kind = p - sepStart == 1 ? s[sepStart] : (byte)0xfe;
            sep = groups == 1 ? kind : sep == kind ? sep : (byte)0xff;
        }
        if (count == 0) return i;
        var end = lastDigitEnd;
        // the token must end here: "4111111111111111abc" or "10.0.0.1.5" are something else
        if (end < s.Length && !Delimiter[s[end]] && s[end] is not ((byte)'.' or (byte)',' or (byte)':' or (byte)'-' or (byte)')'))
            return i;
        if (end < s.Length - 1 && s[end] == '.' && Validators.IsDigit(s[end + 1])) return i;
        // the token goes on (an IPv6 address, a UUID's first group, a time): not a number, a word
        var notHere = (end < s.Length && !Delimiter[s[end]] && !(s[end] is (byte)'.' or (byte)',')) || open ? i : end;
        var token = s[i..end];
        if (groups == 4 && sep == '.' && !plus)
        {
            if (open) return i;
            if (On(cx.Enabled, BuiltIn.IpAddress) && Validators.Ipv4(token) && (cx.HintAt(s, i) & KeyHint.Version) == 0)
                cx.Found.Add(new ValueMatch(BuiltIn.IpAddress, i, token.Length));
            return end;
        }
        if (count < 7) return notHere; // shorter than a phone, an SSN or a card
        if (sep == '.' && !plus && groups != 3) return notHere; // versions, decimals, dates: nothing here
        return CheckedDigits(s, i, end, count, groups, groupLengths, sep, plus, open, in cx) ? end : notHere;
    }

    /// <summary>The digits of the number token s[i..end] through the validators. Apart from
    /// NumberToken, and the copy of separated digits apart again, so that a buffer on the stack
    /// (a frame with a stack guard, compiled without tiering) is paid only by the numbers long
    /// enough that have separators, not by every digit run.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static bool CheckedDigits(ReadOnlySpan<byte> s, int i, int end, int count, int groups, ulong groupLengths, byte sep,
        bool plus, bool open, in Context cx)
    {
        // a bare run (a card number, an id) is its own digits: nothing to copy
        if (groups == 1 && !plus && !open) return Digits(s, s[i..end], s[i..end], groups, groupLengths, sep, plus, open, i, in cx);
        return SeparatedDigits(s, i, end, count, groups, groupLengths, sep, plus, open, in cx);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static bool SeparatedDigits(ReadOnlySpan<byte> s, int i, int end, int count, int groups, ulong groupLengths, byte sep,
        bool plus, bool open, in Context cx)
    {
        Span<byte> digits = stackalloc byte[20];
        var d = 0;
        for (var k = i; k < end; k++)
            if (Validators.IsDigit(s[k])) digits[d++] = s[k];
        return Digits(s, s[i..end], digits[..count], groups, groupLengths, sep, plus, open, i, in cx);
    }

    private static int GroupLength(ulong lengths, int g) => (int)(lengths >> (8 * g)) & 0xff;

    /// <summary>The number validators over the digits of a token (at offset in the value).</summary>
    private static bool Digits(ReadOnlySpan<byte> value, ReadOnlySpan<byte> token, ReadOnlySpan<byte> d, int groups, ulong lengths, byte sep,
        bool plus, bool open, int offset, in Context cx)
    {
        var n = d.Length;
        var enabled = cx.Enabled;
        if (On(enabled, BuiltIn.CreditCard) && n is >= 13 and <= 19 && !plus && !open && (groups == 1 || sep is (byte)' ' or (byte)'-') &&
            Validators.CreditCard(d))
        {
            cx.Found.Add(new ValueMatch(BuiltIn.CreditCard, offset, token.Length));
            return true;
        }
        if (On(enabled, BuiltIn.Ssn) && n == 9 && !plus && !open && Validators.Ssn(d) &&
            ((groups == 3 && sep is (byte)'-' or (byte)' ' && GroupLength(lengths, 0) == 3 && GroupLength(lengths, 1) == 2) ||
             (groups == 1 && (cx.HintAt(value, offset) & KeyHint.Ssn) != 0)))
        {
            cx.Found.Add(new ValueMatch(BuiltIn.Ssn, offset, token.Length));
            return true;
        }
        if (On(enabled, BuiltIn.PhoneNumber) && n is >= 7 and <= 15)
        {
            // a bare digit run is a phone only under a phone-like name; otherwise it must be written
            // as one: international (+…), or the US groups 3-3-4 ((415) 555-2671, 415-555-2671)
            var shaped = plus && n >= 8 ||
                         groups == 3 && GroupLength(lengths, 0) == 3 && GroupLength(lengths, 1) == 3 && GroupLength(lengths, 2) == 4 ||
                         groups == 4 && GroupLength(lengths, 0) == 1 && GroupLength(lengths, 1) == 3 && GroupLength(lengths, 2) == 3 && GroupLength(lengths, 3) == 4;
            if ((shaped || (groups == 1 && (cx.HintAt(value, offset) & KeyHint.Phone) != 0)) && Validators.Phone(token, d, plus))
            {
                cx.Found.Add(new ValueMatch(BuiltIn.PhoneNumber, offset, token.Length));
                return true;
            }
        }
        return false;
    }

    /// <summary>A token that is not a number: dispatched on its shape.</summary>
    private static void Word(ReadOnlySpan<byte> s, int start, int end, in Context cx)
    {
        var w = s[start..end];
        var enabled = cx.Enabled;
        var found = cx.Found;
        var at = w.IndexOf((byte)'@');
        if (at >= 0)
        {
            if (On(enabled, BuiltIn.Email) && w[(at + 1)..].IndexOf((byte)'@') < 0)
            {
                var (emailStart, length) = Validators.Email(w, at);
                if (length > 0) found.Add(new ValueMatch(BuiltIn.Email, start + emailStart, length));
            }
            return;
        }
        // shorter than every category below but IPv6: refused before anything is counted
        if (w.Length < 15 && w.IndexOf((byte)':') < 0) return;
        // a UUID (a request id in every request) before the counts: it has no '.' or ':', so the
        // reading below would come to the same check
        if (w.Length == 36 && w[8] == '-' && On(enabled, BuiltIn.Uuid) && Validators.Uuid(w))
        {
            found.Add(new ValueMatch(BuiltIn.Uuid, start, 36));
            return;
        }
        // vector counts: a token that gets here is usually a UUID or an id of tens of bytes
        var dots = w.Count((byte)'.');
        var dashes = w.Count((byte)'-');
        var colons = w.Count((byte)':');
        // a sentence's full stop is not part of the token
        var trimmed = w;
        while (trimmed.Length > 0 && trimmed[^1] is (byte)'.' or (byte)':' or (byte)',') trimmed = trimmed[..^1];
        var len = trimmed.Length;
        if (colons >= 2)
        {
            if (On(enabled, BuiltIn.IpAddress) && w.IndexOfAnyExcept(HexColonDot) < 0 && Validators.Ipv6(trimmed))
                found.Add(new ValueMatch(BuiltIn.IpAddress, start, len));
            return;
        }
        if (len < 15) return; // shorter than every token below
        if (dots == 2 && w[0] == 'e' && On(enabled, BuiltIn.Jwt))
        {
            if (Validators.Jwt(trimmed)) found.Add(new ValueMatch(BuiltIn.Jwt, start, len));
            return;
        }
        if (len == 36 && dashes == 4)
        {
            if (On(enabled, BuiltIn.Uuid) && Validators.Uuid(trimmed)) found.Add(new ValueMatch(BuiltIn.Uuid, start, len));
            return;
        }
        if (dots + dashes + colons > 0 || w.IndexOfAnyExcept(UpperOrDigit) >= 0) return;
        if (len == 20 && On(enabled, BuiltIn.AwsAccessKey) && Validators.AwsAccessKey(trimmed))
            found.Add(new ValueMatch(BuiltIn.AwsAccessKey, start, len));
        else if (len == 17 && On(enabled, BuiltIn.Vin) && Validators.Vin(trimmed))
            found.Add(new ValueMatch(BuiltIn.Vin, start, len));
        else if (On(enabled, BuiltIn.Iban) && Validators.Iban(trimmed))
            found.Add(new ValueMatch(BuiltIn.Iban, start, len));
    }
}
