using Collector.Http;

namespace Collector.Output;

/// <summary>The body policy: what of a body is sent, and how it is marked. Decided over the bytes
/// the earlier steps leave (decoded, masked), before anything is written.</summary>
public readonly struct BodyPlan
{
    public readonly int Length;      // payload bytes sent (text or before base64)
    public readonly bool Base64;
    public readonly bool Plain;      // printable ASCII without quote or backslash: copied as it is
    public readonly bool Withheld;   // a cut JSON body
    public readonly bool Cap, Gap, Incomplete;

    private BodyPlan(int length, bool base64, bool withheld, bool cap, bool gap, bool incomplete, bool plain = false)
    {
        Length = length;
        Base64 = base64;
        Plain = plain;
        Withheld = withheld;
        Cap = cap;
        Gap = gap;
        Incomplete = incomplete;
    }

    public bool Cut => Cap || Gap || Incomplete;

    /// <summary>The plan for body (m's body, or what masking made of it), cut at cap.</summary>
    public static BodyPlan Of(HttpMessage m, ReadOnlySpan<byte> body, int cap)
    {
        var raw = body;
        var capped = m.BodyTruncated || m.DecodedTruncated;
        if (raw.Length > cap)
        {
            raw = raw[..cap];
            capped = true;
        }
        var gap = m.BodyHasGap;
        var incomplete = m.Incomplete;
        var cut = capped || gap || incomplete;
        if (cut && IsJson(m)) return new BodyPlan(raw.Length, false, true, capped, gap, incomplete);
        if (m.AlwaysBase64) return new BodyPlan(raw.Length, true, false, capped, gap, incomplete);
        // most text bodies: one pass says both "valid UTF-8" and "nothing to escape"
        if (JsonText.IsPlain(raw)) return new BodyPlan(raw.Length, false, false, capped, gap, incomplete, plain: true);
        if (System.Text.Unicode.Utf8.IsValid(raw)) return new BodyPlan(raw.Length, false, false, capped, gap, incomplete);
        if (cut)
        {
            // a cut may fall inside a multi-byte character: drop that partial character
            for (var trim = 1; trim <= 3 && trim < raw.Length; trim++)
                if (IsPartialCharAtEnd(raw, trim) && System.Text.Unicode.Utf8.IsValid(raw[..^trim]))
                    return new BodyPlan(raw.Length - trim, false, false, capped, gap, incomplete);
        }
        return new BodyPlan(raw.Length, true, false, capped, gap, incomplete);
    }

    private static bool IsPartialCharAtEnd(ReadOnlySpan<byte> s, int trim) =>
        (s[^trim] & 0xC0) == 0xC0; // the last `trim` bytes begin with a lead byte

    public static bool IsJson(HttpMessage m)
    {
        var i = m.FindHeader("content-type"u8);
        return i >= 0 && ContainsIgnoreCase(m.HeaderValue(i), "json"u8);
    }

    /// <summary>Whether s holds lower (ASCII lower case, not empty) in any case.</summary>
    public static bool ContainsIgnoreCase(ReadOnlySpan<byte> s, ReadOnlySpan<byte> lower)
    {
        // the places of its first byte, in either case, found by a vector search; the rest compared there
        var first = lower[0];
        var upper = first is >= (byte)'a' and <= (byte)'z' ? (byte)(first - 0x20) : first;
        var rest = lower[1..];
        var last = s.Length - lower.Length; // the last place it can start
        for (var i = 0; i <= last;)
        {
            var k = s[i..(last + 1)].IndexOfAny(first, upper);
            if (k < 0) return false;
            i += k;
            if (HttpText.EqualsLower(s.Slice(i + 1, rest.Length), rest)) return true;
            i++;
        }
        return false;
    }

    /// <summary>The x-collector-body-truncated value: why the body is not whole and how much of it is sent.</summary>
    public string TruncationNote(HttpMessage m)
    {
        var reasons = (Cap ? "cap," : "") + (Gap ? "gap," : "") + (Incomplete ? "incomplete," : "");
        var note = $"{reasons.TrimEnd(',')}; kept={(Withheld ? 0 : Length)}; wire={m.BodyTotalBytes}";
        return Withheld ? note + "; json body withheld" : note;
    }
}
