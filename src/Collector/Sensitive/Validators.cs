using System.Buffers.Text;
using System.Runtime.Intrinsics;
using System.Text.Json;
using PhoneNumbers;

namespace Collector.Sensitive;

/// <summary>The checks that turn a token of the right shape into a finding: check digits, number
/// plans and formats, each over bytes without allocating (the phone plan check is the exception:
/// libphonenumber takes strings, and is only asked about tokens already shaped like a number).</summary>
public static class Validators
{
    /// <summary>Luhn over ASCII digits.</summary>
    public static bool Luhn(ReadOnlySpan<byte> digits)
    {
        var sum = 0;
        var dbl = false;
        for (var i = digits.Length - 1; i >= 0; i--)
        {
            var d = digits[i] - '0';
            if (dbl)
            {
                d *= 2;
                if (d > 9) d -= 9;
            }
            sum += d;
            dbl = !dbl;
        }
        return sum % 10 == 0;
    }

    /// <summary>Whether the digits start like a card of a known brand and have that brand's length
    /// (Visa, Mastercard, American Express, Discover, JCB, Diners Club, UnionPay).</summary>
    public static bool CardBrand(ReadOnlySpan<byte> d)
    {
        var n = d.Length;
        if (n < 13 || n > 19) return false;
        var p1 = Prefix(d, 1);
        var p2 = Prefix(d, 2);
        var p3 = Prefix(d, 3);
        var p4 = Prefix(d, 4);
        if (p1 == 4) return n is 13 or 16 or 19;                                        // Visa
        if (p2 is >= 51 and <= 55 || p4 is >= 2221 and <= 2720) return n == 16;          // Mastercard
        if (p2 is 34 or 37) return n == 15;                                              // American Express
        if (p4 == 6011 || p2 == 65 || p3 is >= 644 and <= 649) return n >= 16;           // Discover
        if (p4 is >= 3528 and <= 3589) return n >= 16;                                   // JCB
        if (p3 is >= 300 and <= 305 || p2 is 36 or 38 or 39) return n >= 14;            // Diners Club
        if (p2 == 62) return n >= 16;                                                    // UnionPay
        return false;
    }

    private static int Prefix(ReadOnlySpan<byte> d, int k)
    {
        var v = 0;
        for (var i = 0; i < k; i++) v = v * 10 + d[i] - '0';
        return v;
    }

    public static bool CreditCard(ReadOnlySpan<byte> digits) => CardBrand(digits) && Luhn(digits);

    /// <summary>A US social security number (9 digits): no area 000, 666 or 900-999, no group 00,
    /// no serial 0000, and not one of the numbers published as samples (the Woolworth wallet card,
    /// the 1962 advertisement, 123-45-6789).</summary>
    public static bool Ssn(ReadOnlySpan<byte> d)
    {
        if (d.Length != 9) return false;
        var area = (d[0] - '0') * 100 + (d[1] - '0') * 10 + (d[2] - '0');
        var group = (d[3] - '0') * 10 + (d[4] - '0');
        var serial = (d[5] - '0') * 1000 + (d[6] - '0') * 100 + (d[7] - '0') * 10 + (d[8] - '0');
        if (area == 0 || area == 666 || area >= 900 || group == 0 || serial == 0) return false;
        return !(d.SequenceEqual("078051120"u8) || d.SequenceEqual("219099999"u8) || d.SequenceEqual("123456789"u8) ||
                 d.SequenceEqual("457555462"u8));
    }

    /// <summary>An e-mail address around the '@' at `at` of s: the span it takes (start, length),
    /// or length 0. The local part and the domain are grown outwards from the '@' over the bytes
    /// each may hold; the domain needs a dot and a top-level label of two letters or more.</summary>
    public static (int Start, int Length) Email(ReadOnlySpan<byte> s, int at)
    {
        var start = at;
        while (start > 0 && (EmailBytes[s[start - 1]] & LocalByte) != 0) start--;
        while (start < at && s[start] == '.') start++;
        if (start == at || at - start > 64 || s[at - 1] == '.') return default;
        var end = at + 1;
        while (end < s.Length && (EmailBytes[s[end]] & DomainByte) != 0) end++;
        while (end > at + 1 && (s[end - 1] == '.' || s[end - 1] == '-')) end--; // a sentence's full stop
        var domain = s[(at + 1)..end];
        if (domain.IsEmpty || domain.Length > 253 || domain[0] == '-') return default;
        // one pass: no "..", ".-" or "-.", and the last dot
        var lastDot = -1;
        byte before = 0;
        for (var i = 0; i < domain.Length; i++)
        {
            var c = domain[i];
            if (c == '.')
            {
                if (before is (byte)'.' or (byte)'-') return default;
                lastDot = i;
            }
            else if (c == '-' && before == '.') return default;
            before = c;
        }
        if (lastDot <= 0) return default;
        var tld = domain[(lastDot + 1)..];
        if (tld.Length < 2) return default;
        foreach (var c in tld)
            if (!IsLetter(c)) return default;
        return (start, end - start);
    }

    private const byte LocalByte = 1, DomainByte = 2;

    // what each byte may be in an address: a table, as the loops above read every byte of it
    private static readonly byte[] EmailBytes = MakeEmailBytes();

    private static byte[] MakeEmailBytes()
    {
        var t = new byte[256];
        for (var c = 0; c < 256; c++)
        {
            var alnum = IsLetter((byte)c) || IsDigit((byte)c);
            if (alnum || c is '.' or '_' or '%' or '+' or '-') t[c] |= LocalByte;
            if (alnum || c is '.' or '-') t[c] |= DomainByte;
        }
        return t;
    }

    public static bool IsLetter(byte c) => (uint)((c | 0x20) - 'a') <= 'z' - 'a';
    public static bool IsDigit(byte c) => (uint)(c - '0') <= 9;
    public static bool IsUpperOrDigit(byte c) => (uint)(c - 'A') <= 'Z' - 'A' || IsDigit(c);
    public static bool IsHex(byte c) => IsDigit(c) || (uint)((c | 0x20) - 'a') <= 'f' - 'a';

    /// <summary>A JSON Web Token: three base64url parts whose first decodes to a JSON object with `alg`.</summary>
    public static bool Jwt(ReadOnlySpan<byte> s)
    {
        if (s.Length < 20 || !s.StartsWith("eyJ"u8)) return false;
        var dot = s.IndexOf((byte)'.');
        if (dot < 4 || dot > 1024) return false;
        var rest = s[(dot + 1)..];
        var dot2 = rest.IndexOf((byte)'.');
        if (dot2 < 1 || rest[(dot2 + 1)..].IndexOf((byte)'.') >= 0) return false;
        foreach (var c in s)
            if (!(IsLetter(c) || IsDigit(c) || c is (byte)'-' or (byte)'_' or (byte)'.' or (byte)'=')) return false;
        Span<byte> header = stackalloc byte[800];
        if (Base64Url.DecodeFromUtf8(s[..dot].TrimEnd((byte)'='), header, out _, out var n) != System.Buffers.OperationStatus.Done) return false;
        var reader = new Utf8JsonReader(header[..n]);
        try
        {
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject) return false;
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                if (reader.ValueTextEquals("alg"u8)) return true;
                reader.Skip();
            }
        }
        catch (JsonException)
        {
            return false; // base64url that is not JSON: not a token header
        }
        return false;
    }

    /// <summary>An HTTP date in its preferred form (RFC 9110 5.6.7, IMF-fixdate: "Sun, 06 Nov 1994
    /// 08:49:37 GMT"), by shape: letters, digits and punctuation in their places. No category
    /// matches in such a value (its words are three letters, its digit groups too short, its
    /// time no IPv6 address), so a header that holds one need not be read token by token.</summary>
    public static bool ImfFixdate(ReadOnlySpan<byte> s)
    {
        if (s.Length != 29 || s[3] != ',' || s[4] != ' ' || s[7] != ' ' || s[11] != ' ' || s[16] != ' ' || s[19] != ':' || s[22] != ':' ||
            s[25] != ' ' || !s[26..].SequenceEqual("GMT"u8))
            return false;
        foreach (var i in (ReadOnlySpan<int>)[0, 1, 2, 8, 9, 10])
            if (!IsLetter(s[i])) return false;
        foreach (var i in (ReadOnlySpan<int>)[5, 6, 12, 13, 14, 15, 17, 18, 20, 21, 23, 24])
            if (!IsDigit(s[i])) return false;
        return true;
    }

    /// <summary>A canonical UUID, 8-4-4-4-12 hex digits with an RFC 9562 variant and version 1-8.</summary>
    public static bool Uuid(ReadOnlySpan<byte> s)
    {
        if (s.Length != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-') return false;
        if (Vector256.IsHardwareAccelerated)
        {
            // the first 32 bytes at once: hex digits everywhere but the dashes at 8, 13, 18 and 23
            var v = Vector256.Create(s);
            var hex = Vector256.LessThan(v - Vector256.Create((byte)'0'), Vector256.Create((byte)10)) |
                      Vector256.LessThan((v | Vector256.Create((byte)0x20)) - Vector256.Create((byte)'a'), Vector256.Create((byte)6));
            const uint dashes = 1u << 8 | 1u << 13 | 1u << 18 | 1u << 23;
            if ((hex.ExtractMostSignificantBits() | dashes) != uint.MaxValue || !IsHex(s[32]) || !IsHex(s[33]) || !IsHex(s[34]) || !IsHex(s[35]))
                return false;
        }
        else
        {
            for (var i = 0; i < 36; i++)
                if (i is not (8 or 13 or 18 or 23) && !IsHex(s[i])) return false;
        }
        return s[14] is >= (byte)'1' and <= (byte)'8' && (s[19] | 0x20) is (byte)'8' or (byte)'9' or (byte)'a' or (byte)'b';
    }

    /// <summary>A vehicle identification number: 17 of [A-HJ-NPR-Z0-9], letters and digits both,
    /// and the check digit (position 9) right.</summary>
    public static bool Vin(ReadOnlySpan<byte> s)
    {
        if (s.Length != 17) return false;
        ReadOnlySpan<int> weights = [8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2];
        var sum = 0;
        var letters = 0;
        for (var i = 0; i < 17; i++)
        {
            var c = s[i];
            int v;
            if (IsDigit(c)) v = c - '0';
            else if (c is >= (byte)'A' and <= (byte)'Z' and not ((byte)'I' or (byte)'O' or (byte)'Q'))
            {
                letters++;
                v = VinLetter(c);
            }
            else return false;
            sum += v * weights[i];
        }
        if (letters == 0 || letters == 17) return false;
        var check = sum % 11;
        return s[8] == (check == 10 ? 'X' : '0' + check);
    }

    private static int VinLetter(byte c) => c switch
    {
        >= (byte)'A' and <= (byte)'H' => c - 'A' + 1,
        >= (byte)'J' and <= (byte)'N' => c - 'J' + 1,
        (byte)'P' => 7,
        (byte)'R' => 9,
        _ => c - 'S' + 2, // S..Z
    };

    /// <summary>An IBAN: country letters, check digits, 11-30 letters or digits; mod 97 is 1.</summary>
    public static bool Iban(ReadOnlySpan<byte> s)
    {
        if (s.Length is < 15 or > 34) return false;
        if (!(s[0] is >= (byte)'A' and <= (byte)'Z' && s[1] is >= (byte)'A' and <= (byte)'Z' && IsDigit(s[2]) && IsDigit(s[3]))) return false;
        var mod = 0;
        for (var k = 0; k < s.Length; k++)
        {
            var c = s[(k + 4) % s.Length];
            if (IsDigit(c)) mod = (mod * 10 + (c - '0')) % 97;
            else if (c is >= (byte)'A' and <= (byte)'Z') mod = (mod * 100 + (c - 'A' + 10)) % 97;
            else return false;
        }
        return mod == 1;
    }

    /// <summary>An AWS access key id: a known four-letter prefix and 16 more upper-case letters or digits.</summary>
    public static bool AwsAccessKey(ReadOnlySpan<byte> s)
    {
        if (s.Length != 20) return false;
        var p = s[..4];
        if (!(p.SequenceEqual("AKIA"u8) || p.SequenceEqual("ASIA"u8) || p.SequenceEqual("ABIA"u8) || p.SequenceEqual("ACCA"u8) ||
              p.SequenceEqual("AGPA"u8) || p.SequenceEqual("AIDA"u8) || p.SequenceEqual("AROA"u8) || p.SequenceEqual("AIPA"u8) ||
              p.SequenceEqual("ANPA"u8) || p.SequenceEqual("ANVA"u8) || p.SequenceEqual("APKA"u8)))
            return false;
        foreach (var c in s)
            if (!IsUpperOrDigit(c)) return false;
        return true;
    }

    /// <summary>IPv4 from its groups: four, each 0-255 without a leading zero.</summary>
    public static bool Ipv4(ReadOnlySpan<byte> s)
    {
        var groups = 0;
        var i = 0;
        while (i < s.Length)
        {
            var start = i;
            var v = 0;
            while (i < s.Length && IsDigit(s[i])) v = v * 10 + (s[i++] - '0');
            var len = i - start;
            if (len is 0 or > 3 || v > 255 || (len > 1 && s[start] == '0')) return false;
            groups++;
            if (i == s.Length) break;
            if (s[i] != '.') return false;
            i++;
            if (i == s.Length) return false;
        }
        return groups == 4;
    }

    /// <summary>IPv6 in any of its textual forms (the runtime's parser, over at most 45 characters).</summary>
    public static bool Ipv6(ReadOnlySpan<byte> s)
    {
        if (s.Length is < 3 or > 45) return false;
        // the parser takes eight groups, or six and an IPv4 address, or fewer around "::": a
        // time (10:00:00) or a MAC-like run is refused without it
        var colons = s.Count((byte)':');
        if (colons != 7 && !(colons == 6 && s.IndexOf((byte)'.') >= 0) && s.IndexOf("::"u8) < 0) return false;
        Span<char> chars = stackalloc char[45];
        for (var i = 0; i < s.Length; i++) chars[i] = (char)s[i];
        return System.Net.IPAddress.TryParse(chars[..s.Length], out var a) && a.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6;
    }

    private static readonly PhoneNumberUtil Phones = PhoneNumberUtil.GetInstance();

    // libphonenumber's answer per number, remembered: its parse costs microseconds and allocates,
    // and the same numbers come back exchange after exchange. One 64-bit word per entry (number,
    // digit count, '+', answer), so threads share it without locks; four ways per set, because
    // direct-mapped, a few thousand numbers already evicted each other (one parse per exchange of
    // a body of twenty phone numbers).
    private const int PhoneWays = 4;
    private static readonly ulong[] PhoneAnswers = new ulong[1 << 16];

    /// <summary>Phone(token), its answer remembered by the digits (at most 15) and the '+'.</summary>
    public static bool Phone(ReadOnlySpan<byte> token, ReadOnlySpan<byte> digits, bool international)
    {
        if (digits.Length is 0 or > 15) return false;
        ulong number = 0;
        foreach (var d in digits) number = number * 10 + (ulong)(d - '0');
        var key = ((number << 4 | (uint)digits.Length) << 1) | (international ? 1UL : 0);
        var mixed = key * 0x9E3779B97F4A7C15UL;
        var set = (int)(mixed >> 50) * PhoneWays; // 14 bits of sets
        var empty = -1;
        for (var way = 0; way < PhoneWays; way++)
        {
            var entry = Volatile.Read(ref PhoneAnswers[set + way]);
            if (entry == 0) empty = empty < 0 ? way : empty;
            else if (entry >> 2 == key) return (entry & 3) == 1;
        }
        var valid = Phone(token);
        // a full set gives up a way chosen by other bits of the key: no order to keep between threads
        var victim = empty >= 0 ? empty : (int)(mixed >> 20) & (PhoneWays - 1);
        Volatile.Write(ref PhoneAnswers[set + victim], key << 2 | (valid ? 1UL : 2UL));
        return valid;
    }

    /// <summary>A phone number valid in its country's plan: international when it starts with '+',
    /// else read as a US number. libphonenumber takes a string: only tokens already shaped like a
    /// number come here.</summary>
    public static bool Phone(ReadOnlySpan<byte> s)
    {
        if (s.Length is < 7 or > 32) return false;
        Span<char> chars = stackalloc char[32];
        for (var i = 0; i < s.Length; i++) chars[i] = (char)s[i];
        var text = new string(chars[..s.Length]);
        try
        {
            var number = Phones.Parse(text, s[0] == '+' ? null : "US");
            return Phones.IsValidNumber(number);
        }
        catch (NumberParseException)
        {
            return false; // not a number in any plan: the answer, not a failure
        }
    }
}
