using System.Buffers;
using System.Buffers.Text;
using System.IO.Compression;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Text;
using Collector.Connections;
using Collector.Http;
using Collector.Metrics;

namespace Collector.Output;

/// <summary>JSON string primitives over bytes: the plain-bytes check and escaping (once, or twice
/// for a string inside the headers string). The writer's only knowledge of JSON.</summary>
internal static class JsonText
{
    /// <summary>A JSON string from bytes that need no escaping (IsPlain), in quotes (escaped
    /// quotes when nested).</summary>
    internal static void Quoted(MessageBuffer o, ReadOnlySpan<byte> s, bool nested)
    {
        var span = o.GetSpan(s.Length + 4);
        var written = 0;
        if (nested) span[written++] = (byte)'\\';
        span[written++] = (byte)'"';
        s.CopyTo(span[written..]);
        written += s.Length;
        if (nested) span[written++] = (byte)'\\';
        span[written++] = (byte)'"';
        o.Advance(written);
    }

    /// <summary>Whether every byte is printable ASCII other than quote and backslash (DEL
    /// included): such bytes are valid UTF-8 and go into a JSON string as they are. Most
    /// header fields and many bodies are; one pass answers what a UTF-8 check and a search for
    /// escapes answered in two.</summary>
    internal static bool IsPlain(ReadOnlySpan<byte> s)
    {
        ref var p = ref MemoryMarshal.GetReference(s);
        var n = (nuint)s.Length;
        if (Vector256.IsHardwareAccelerated && n >= (nuint)Vector256<byte>.Count)
        {
            nuint i = 0;
            for (; i + (nuint)Vector256<byte>.Count <= n; i += (nuint)Vector256<byte>.Count)
                if (!IsPlain(Vector256.LoadUnsafe(ref p, i))) return false;
            // the tail: the last 32 bytes, overlapping what was checked
            return i == n || IsPlain(Vector256.LoadUnsafe(ref p, n - (nuint)Vector256<byte>.Count));
        }
        if (Vector128.IsHardwareAccelerated && n >= (nuint)Vector128<byte>.Count)
        {
            nuint i = 0;
            for (; i + (nuint)Vector128<byte>.Count <= n; i += (nuint)Vector128<byte>.Count)
                if (!IsPlain(Vector128.LoadUnsafe(ref p, i))) return false;
            return i == n || IsPlain(Vector128.LoadUnsafe(ref p, n - (nuint)Vector128<byte>.Count));
        }
        for (nuint i = 0; i < n; i++)
            if (!IsPlain(Unsafe.Add(ref p, i))) return false;
        return true;
    }

    // a signed compare catches controls (below 0x20) and non-ASCII bytes (0x80 and up) at once
    internal static bool IsPlain(byte c) => (sbyte)c >= 0x20 && c != (byte)'"' && c != (byte)'\\';

    private static bool IsPlain(Vector256<byte> v) => NotPlain(v) == Vector256<byte>.Zero;

    private static bool IsPlain(Vector128<byte> v) =>
        (Vector128.LessThan(v.AsSByte(), Vector128.Create((sbyte)0x20)).AsByte() |
         Vector128.Equals(v, Vector128.Create((byte)'"')) | Vector128.Equals(v, Vector128.Create((byte)'\\'))) == Vector128<byte>.Zero;

    /// <summary>Set where a byte is not plain.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<byte> NotPlain(Vector256<byte> v) =>
        Vector256.LessThan(v.AsSByte(), Vector256.Create((sbyte)0x20)).AsByte() |
        Vector256.Equals(v, Vector256.Create((byte)'"')) | Vector256.Equals(v, Vector256.Create((byte)'\\'));

    /// <summary>A JSON string from valid UTF-8: quotes, backslashes and control characters
    /// escaped, everything else copied as it is. 32 bytes at a time: one compare finds every
    /// byte of the block that needs escaping, and the runs between them are moved with 32-byte
    /// copies (a JSON body has a quote every few bytes: a byte-by-byte loop or a search per
    /// escape costs 2-4 times as much). Nested: a string inside the headers string, its quotes
    /// written escaped and its content escaped twice.</summary>
    internal static void Escaped(MessageBuffer o, ReadOnlySpan<byte> s, bool nested = false)
    {
        var span = o.GetSpan(s.Length * 7 + 4 + Vector256<byte>.Count);
        var written = 0;
        if (nested) span[written++] = (byte)'\\';
        span[written++] = (byte)'"';
        written += Escape(s, span[written..], nested);
        if (nested) span[written++] = (byte)'\\';
        span[written++] = (byte)'"';
        o.Advance(written);
    }

    private static readonly SearchValues<byte> NeedsEscape = SearchValues.Create(
        [.. Enumerable.Range(0, 0x20).Select(b => (byte)b), (byte)'"', (byte)'\\']);

    /// <summary>Escapes s into d (room for 7 bytes per input byte plus 32), once or twice;
    /// returns bytes written.</summary>
    private static int Escape(ReadOnlySpan<byte> s, Span<byte> d, bool twice)
    {
        // Most fields (names, values, addresses) and many bodies need no escaping at all: one
        // vectorized search (short inputs included) and a copy.
        var first = s.IndexOfAny(NeedsEscape);
        if (first < 0)
        {
            s.CopyTo(d);
            return s.Length;
        }
        s[..first].CopyTo(d);
        return first + EscapeFrom(s[first..], d[first..], twice);
    }

    private static int EscapeFrom(ReadOnlySpan<byte> s, Span<byte> d, bool twice)
    {
        ref var src = ref MemoryMarshal.GetReference(s);
        ref var dst = ref MemoryMarshal.GetReference(d);
        nuint i = 0, o = 0, n = (nuint)s.Length;
        if (Vector256.IsHardwareAccelerated)
        {
            var space = Vector256.Create((byte)0x20);
            var quote = Vector256.Create((byte)'"');
            var backslash = Vector256.Create((byte)'\\');
            // a run is copied with a 32-byte load from where it starts: keep 64 bytes ahead in the input
            while (i + 2 * (nuint)Vector256<byte>.Count <= n)
            {
                var v = Vector256.LoadUnsafe(ref src, i);
                var bits = (Vector256.LessThan(v, space) | Vector256.Equals(v, quote) | Vector256.Equals(v, backslash)).ExtractMostSignificantBits();
                if (bits == 0)
                {
                    v.StoreUnsafe(ref dst, o);
                    i += (nuint)Vector256<byte>.Count;
                    o += (nuint)Vector256<byte>.Count;
                    continue;
                }
                nuint start = 0;
                do
                {
                    var at = (nuint)BitOperations.TrailingZeroCount(bits);
                    bits &= bits - 1;
                    Vector256.LoadUnsafe(ref src, i + start).StoreUnsafe(ref dst, o); // the run [start, at), and more
                    o += at - start;
                    o += twice ? EscapeTwice(Unsafe.Add(ref src, i + at), ref Unsafe.Add(ref dst, o))
                               : EscapeOne(Unsafe.Add(ref src, i + at), ref Unsafe.Add(ref dst, o));
                    start = at + 1;
                } while (bits != 0);
                Vector256.LoadUnsafe(ref src, i + start).StoreUnsafe(ref dst, o); // the block's tail
                o += (nuint)Vector256<byte>.Count - start;
                i += (nuint)Vector256<byte>.Count;
            }
        }
        for (; i < n; i++)
        {
            var c = Unsafe.Add(ref src, i);
            if (c >= 0x20 && c != (byte)'"' && c != (byte)'\\') Unsafe.Add(ref dst, o++) = c;
            else o += twice ? EscapeTwice(c, ref Unsafe.Add(ref dst, o)) : EscapeOne(c, ref Unsafe.Add(ref dst, o));
        }
        return (int)o;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static nuint EscapeOne(byte c, ref byte d)
    {
        Unsafe.Add(ref d, 0) = (byte)'\\';
        switch (c)
        {
            case (byte)'"': Unsafe.Add(ref d, 1) = (byte)'"'; return 2;
            case (byte)'\\': Unsafe.Add(ref d, 1) = (byte)'\\'; return 2;
            case (byte)'\n': Unsafe.Add(ref d, 1) = (byte)'n'; return 2;
            case (byte)'\r': Unsafe.Add(ref d, 1) = (byte)'r'; return 2;
            case (byte)'\t': Unsafe.Add(ref d, 1) = (byte)'t'; return 2;
            default:
                Unsafe.Add(ref d, 1) = (byte)'u';
                Unsafe.Add(ref d, 2) = (byte)'0';
                Unsafe.Add(ref d, 3) = (byte)'0';
                Unsafe.Add(ref d, 4) = Hex(c >> 4);
                Unsafe.Add(ref d, 5) = Hex(c & 0xF);
                return 6;
        }
    }

    /// <summary>The escape of the escape: what EscapeOne writes, escaped again (a quote becomes
    /// backslash, backslash, backslash, quote).</summary>
    private static nuint EscapeTwice(byte c, ref byte d)
    {
        Span<byte> once = stackalloc byte[6];
        var n = (int)EscapeOne(c, ref once[0]);
        nuint o = 0;
        for (var i = 0; i < n; i++)
        {
            var b = once[i];
            if (b == (byte)'\\' || b == (byte)'"') Unsafe.Add(ref d, o++) = (byte)'\\';
            Unsafe.Add(ref d, o++) = b;
        }
        return o;
    }

    private static byte Hex(int v) => (byte)(v < 10 ? '0' + v : 'a' + v - 10);
}
