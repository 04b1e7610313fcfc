using System.Runtime.CompilerServices;

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
}

/// <summary>The built-in detection over one value, in one pass over its bytes, with no regular
/// expression and no allocation: the value is cut into tokens at delimiters, a token that starts
/// like a number is read as digit groups and separators (cards, SSNs, phones, IPv4), any other
/// token is dispatched on its shape (length, which punctuation, which letters) to the one
/// validator that could accept it. Most tokens of real traffic (words, small numbers, ids) are
/// refused by their shape at a cost of a few compares.</summary>
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

    /// <summary>Appends the matches of the enabled categories in value to found.</summary>
    public static void Scan(ReadOnlySpan<byte> value, KeyHint hint, ValueKind kind, uint enabled, List<ValueMatch> found)
    {
        if (value.IsEmpty || (enabled & AllBuiltIns) == 0) return;
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
        if (On(enabled, BuiltIn.PrivateKey)) PrivateKeys(value, found);
        if ((kind & ValueKind.JsonNumber) != 0)
        {
            // a whole number: digits only (a sign, fraction or exponent makes it no identifier)
            foreach (var c in value)
                if (!Validators.IsDigit(c)) return;
            Digits(value, value, 1, hint, enabled, found, 0);
            return;
        }
        var escaped = (kind & ValueKind.JsonEscaped) != 0;
        var n = value.Length;
        var i = 0;
        while (i < n)
        {
            var c = value[i];
            if (Validators.IsDigit(c) || c == '+' || (c == '(' && i + 1 < n && Validators.IsDigit(value[i + 1])))
            {
                var end = NumberToken(value, i, hint, enabled, found);
                if (end > i)
                {
                    i = end;
                    continue;
                }
            }
            if (Delimiter[c])
            {
                // an escape sequence is skipped whole, so that no match starts inside one (\n4111…)
                i += escaped && c == '\\' && i + 1 < n ? value[i + 1] == 'u' ? 6 : 2 : 1;
                continue;
            }
            var wordEnd = i + 1;
            while (wordEnd < n && !Delimiter[value[wordEnd]]) wordEnd++;
            Word(value, i, wordEnd, hint, enabled, found);
            i = wordEnd;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool On(uint enabled, BuiltIn c) => (enabled & (1u << (int)c)) != 0;

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
    /// the token is not a number the validators want (the caller then reads it as a word).</summary>
    private static int NumberToken(ReadOnlySpan<byte> s, int i, KeyHint hint, uint enabled, List<ValueMatch> found)
    {
        Span<byte> digits = stackalloc byte[20];
        Span<byte> groupLengths = stackalloc byte[8];
        var groups = 0;
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
            while (p < s.Length && Validators.IsDigit(s[p]))
            {
                if (count == 20) return i; // longer than any number here: an id
                digits[count++] = s[p++];
            }
            if (p == start) break;
            if (groups == 8) return i;
            groupLengths[groups++] = (byte)(p - start);
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
        var token = s[i..end];
        var d = digits[..count];

        if (groups == 4 && sep == '.' && !plus)
        {
            if (open) return i;
            if (On(enabled, BuiltIn.IpAddress) && (hint & KeyHint.Version) == 0 && Validators.Ipv4(token))
                found.Add(new ValueMatch(BuiltIn.IpAddress, i, token.Length));
            return end;
        }
        // the token goes on (an IPv6 address, a UUID's first group, a time): not a number, a word
        var wordGoesOn = end < s.Length && !Delimiter[s[end]] && !(s[end] is (byte)'.' or (byte)',') ;
        if (sep == '.' && !plus && groups != 3) return wordGoesOn || open ? i : end; // versions, decimals, dates: nothing here
        if (Digits(token, d, groups, hint, enabled, found, i, groupLengths[..groups], sep, plus, open)) return end;
        // "(4111…)" is no phone: read again from the digit, without the parenthesis
        return wordGoesOn || open ? i : end;
    }

    /// <summary>The number validators over the digits of a token (at offset in the value).</summary>
    private static bool Digits(ReadOnlySpan<byte> token, ReadOnlySpan<byte> d, int groups, KeyHint hint, uint enabled,
        List<ValueMatch> found, int offset, ReadOnlySpan<byte> groupLengths = default, byte sep = 0, bool plus = false, bool open = false)
    {
        var n = d.Length;
        if (On(enabled, BuiltIn.CreditCard) && n is >= 13 and <= 19 && !plus && !open && (groups == 1 || sep is (byte)' ' or (byte)'-') &&
            Validators.CreditCard(d))
        {
            found.Add(new ValueMatch(BuiltIn.CreditCard, offset, token.Length));
            return true;
        }
        if (On(enabled, BuiltIn.Ssn) && n == 9 && !plus && !open &&
            ((groups == 3 && sep is (byte)'-' or (byte)' ' && groupLengths[0] == 3 && groupLengths[1] == 2) ||
             (groups == 1 && (hint & KeyHint.Ssn) != 0)) &&
            Validators.Ssn(d))
        {
            found.Add(new ValueMatch(BuiltIn.Ssn, offset, token.Length));
            return true;
        }
        if (On(enabled, BuiltIn.PhoneNumber) && n is >= 7 and <= 15)
        {
            // a bare digit run is a phone only under a phone-like name; otherwise it must be written
            // as one: international (+…), or the US groups 3-3-4 ((415) 555-2671, 415-555-2671)
            var shaped = plus && n >= 8 ||
                         groups == 3 && groupLengths.Length == 3 && groupLengths[0] == 3 && groupLengths[1] == 3 && groupLengths[2] == 4 ||
                         groups == 4 && groupLengths.Length == 4 && groupLengths[0] == 1 && groupLengths[1] == 3 && groupLengths[2] == 3 && groupLengths[3] == 4;
            if ((shaped || (hint & KeyHint.Phone) != 0) && Validators.Phone(token))
            {
                found.Add(new ValueMatch(BuiltIn.PhoneNumber, offset, token.Length));
                return true;
            }
        }
        return false;
    }

    /// <summary>A token that is not a number: dispatched on its shape.</summary>
    private static void Word(ReadOnlySpan<byte> s, int start, int end, KeyHint hint, uint enabled, List<ValueMatch> found)
    {
        var w = s[start..end];
        int at = -1, dots = 0, dashes = 0, colons = 0, upperOrDigit = 0, hex = 0;
        for (var k = 0; k < w.Length; k++)
        {
            var c = w[k];
            if (c == '@') at = at == -1 ? k : -2;
            else if (c == '.') dots++;
            else if (c == '-') dashes++;
            else if (c == ':') colons++;
            if (Validators.IsUpperOrDigit(c)) upperOrDigit++;
            if (Validators.IsHex(c)) hex++;
        }
        if (at >= 0)
        {
            if (On(enabled, BuiltIn.Email))
            {
                var (emailStart, length) = Validators.Email(w, at);
                if (length > 0) found.Add(new ValueMatch(BuiltIn.Email, start + emailStart, length));
            }
            return;
        }
        // a sentence's full stop is not part of the token
        var trimmed = w;
        while (trimmed.Length > 0 && trimmed[^1] is (byte)'.' or (byte)':' or (byte)',') trimmed = trimmed[..^1];
        var len = trimmed.Length;
        if (colons >= 2)
        {
            if (On(enabled, BuiltIn.IpAddress) && hex + colons + dots == w.Length && Validators.Ipv6(trimmed))
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
        if (upperOrDigit != w.Length || dots + dashes + colons > 0) return;
        if (len == 20 && On(enabled, BuiltIn.AwsAccessKey) && Validators.AwsAccessKey(trimmed))
            found.Add(new ValueMatch(BuiltIn.AwsAccessKey, start, len));
        else if (len == 17 && On(enabled, BuiltIn.Vin) && Validators.Vin(trimmed))
            found.Add(new ValueMatch(BuiltIn.Vin, start, len));
        else if (On(enabled, BuiltIn.Iban) && Validators.Iban(trimmed))
            found.Add(new ValueMatch(BuiltIn.Iban, start, len));
    }
}
