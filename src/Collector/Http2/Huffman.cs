using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Collector.Http2;

/// <summary>The HPACK string Huffman code (RFC 7541 Appendix B), decoded a whole code at a time
/// through tables built once from the code lengths.</summary>
internal static class Huffman
{
    public const int Eos = 256;

    // Code length of each symbol 0..256 (256 = EOS), sixteen per row. The RFC's code is canonical
    // (codes ascend with length, and with symbol within a length), so the lengths alone fix every code.
    private static ReadOnlySpan<byte> Lengths =>
    [
        13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, //   0..15
        28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28, //  16..31
        6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6,         //  ' '../
        5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10,              //  0..?
        13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,                //  @..O
        7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6,             //  P.._
        15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5,                //  `..o
        6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28,            //  p..127
        20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, // 128..143
        24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, // 144..159
        22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, // 160..175
        21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, // 176..191
        26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, // 192..207
        19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, // 208..223
        20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, // 224..239
        26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, // 240..255
        30,                                                             // EOS
    ];

    private static readonly uint[] Codes = BuildCodes();

    // Decoding reads the input as a bit string, 64 bits at a time. The next FastBits bits are looked
    // up in Fast, which says the one or two symbols whose codes they begin with (codes of at most
    // FastBits bits together: every printable ASCII character but a few, and two of the commonest
    // 5- and 6-bit ones at once): sym1 in bits 0-7, sym2 in 8-15, the first code's length in 16-19,
    // both lengths in 20-23, how many symbols in 24-25 (0: a longer code). Longer codes are found
    // from the canonical layout: the codes of one length are consecutive from FirstCode[length], for
    // the symbols ByCode[FirstIndex[length]..] in symbol order.
    private const int FastBits = 12;
    private static readonly uint[] Fast = new uint[1 << FastBits];
    private static readonly uint[] FirstCode = new uint[31];
    private static readonly int[] FirstIndex = new int[31];
    private static readonly int[] CountOf = new int[31];
    private static readonly ushort[] ByCode = new ushort[Eos + 1];

    static Huffman()
    {
        var at = 0;
        for (var len = 1; len <= 30; len++)
        {
            FirstIndex[len] = at;
            for (var sym = 0; sym <= Eos; sym++)
            {
                if (Lengths[sym] != len) continue;
                if (CountOf[len]++ == 0) FirstCode[len] = Codes[sym];
                ByCode[at++] = (ushort)sym;
            }
        }
        for (var prefix = 0; prefix < 1 << FastBits; prefix++)
        {
            var bits = (ulong)prefix << (64 - FastBits);
            var (len1, sym1) = Next(bits);
            if (len1 > FastBits) continue;
            var entry = (uint)sym1 | (uint)len1 << 16 | (uint)len1 << 20 | 1u << 24;
            var (len2, sym2) = Next(bits << len1);
            if (len1 + len2 <= FastBits) entry = (uint)sym1 | (uint)sym2 << 8 | (uint)len1 << 16 | (uint)(len1 + len2) << 20 | 2u << 24;
            Fast[prefix] = entry;
        }
    }

    /// <summary>The symbol whose code begins the left-aligned bits, and its length.</summary>
    private static (int Length, int Symbol) Next(ulong bits)
    {
        for (var len = 5; len <= 30; len++)
        {
            var offset = (bits >> (64 - len)) - FirstCode[len];
            if (offset < (ulong)CountOf[len]) return (len, ByCode[FirstIndex[len] + (int)offset]);
        }
        return (31, Eos); // not reached: the code is complete, every 30 bits begin with a code
    }

    private static uint[] BuildCodes()
    {
        var codes = new uint[Eos + 1];
        uint next = 0;
        for (var len = 1; len <= 30; len++)
        {
            for (var sym = 0; sym <= Eos; sym++)
                if (Lengths[sym] == len) codes[sym] = next++;
            next <<= 1;
        }
        return codes;
    }

    /// <summary>The code of <paramref name="symbol"/>, right-aligned in <see cref="Length"/> bits.</summary>
    public static uint Code(int symbol) => Codes[symbol];

    public static int Length(int symbol) => Lengths[symbol];

    /// <summary>Decodes <paramref name="src"/> into <paramref name="dst"/>. Returns the number of bytes
    /// written, -1 when src is not a valid HPACK Huffman string (EOS inside, or padding that is not
    /// 0-7 one bits), -2 when the output does not fit in dst.</summary>
    public static int Decode(ReadOnlySpan<byte> src, Span<byte> dst)
    {
        ref var table = ref MemoryMarshal.GetArrayDataReference(Fast);
        ref var output = ref MemoryMarshal.GetReference(dst);
        var room = dst.Length;
        ulong bits = 0; // unread bits, left-aligned
        var count = 0;  // how many
        var i = 0;
        var n = 0;
        while (true)
        {
            if (count < 32)
            {
                // a refill keeps more bits than the longest code unless the input is used up
                if (src.Length - i >= 8)
                {
                    // eight bytes at once; of the last one only the bits that fit land, and the
                    // next refill lays the same byte over them again
                    bits |= BinaryPrimitives.ReadUInt64BigEndian(src[i..]) >> count;
                    var whole = (64 - count) >> 3;
                    i += whole;
                    count += whole << 3;
                }
                else
                {
                    while (count <= 56 && i < src.Length)
                    {
                        bits |= (ulong)src[i++] << (56 - count);
                        count += 8;
                    }
                    if (count == 0) return n;
                }
            }
            var e = Unsafe.Add(ref table, (nint)(bits >> (64 - FastBits)));
            if (e >> 24 == 2 && (int)(e >> 20 & 0xf) <= count && n + 2 <= room)
            {
                Unsafe.Add(ref output, n) = (byte)e;
                Unsafe.Add(ref output, n + 1) = (byte)(e >> 8);
                n += 2;
                var both = (int)(e >> 20 & 0xf);
                bits <<= both;
                count -= both;
                continue;
            }
            int len, sym;
            if (e != 0)
            {
                len = (int)(e >> 16 & 0xf);
                sym = (int)(e & 0xff);
            }
            else
            {
                (len, sym) = Next(bits);
            }
            if (len > count)
            {
                // the input is used up: what is left must be padding, fewer than 8 bits, all ones
                // (a prefix of EOS, which no shorter code is)
                return count <= 7 && bits >> (64 - count) == (1UL << count) - 1 ? n : -1;
            }
            if (sym == Eos) return -1;
            if (n == room) return -2;
            Unsafe.Add(ref output, n++) = (byte)sym;
            bits <<= len;
            count -= len;
        }
    }
}
