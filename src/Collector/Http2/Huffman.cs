namespace Collector.Http2;

/// <summary>The HPACK string Huffman code (RFC 7541 Appendix B), decoded four bits at a time through a
/// state table built once from the code lengths.</summary>
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

    // Transition for (state, nibble) at [state * 16 + nibble]: the next state in the low byte, the
    // emitted symbol in the next byte, then the flags. A state is an inner node of the code tree
    // (root = 0); the shortest code is 5 bits, so a nibble completes at most one symbol.
    private const uint Emit = 1 << 16;
    private const uint Fail = 1 << 17;
    private static readonly uint[] Transitions;

    // States that may end a string: the padding must be a prefix of EOS (all ones) shorter than a byte.
    private static readonly bool[] Accepting;

    static Huffman()
    {
        // children[node * 2 + bit]: an inner node id (> 0, the root is never a child) or ~symbol.
        var children = new int[256 * 2];
        var nodes = 1;
        for (var sym = 0; sym <= Eos; sym++)
        {
            var len = Lengths[sym];
            var code = Codes[sym];
            var node = 0;
            for (var i = len - 1; i > 0; i--)
            {
                ref var child = ref children[node * 2 + (int)((code >> i) & 1)];
                if (child == 0) child = nodes++;
                node = child;
            }
            children[node * 2 + (int)(code & 1)] = ~sym;
        }

        Transitions = new uint[256 * 16];
        for (var state = 0; state < 256; state++)
        {
            for (var nibble = 0; nibble < 16; nibble++)
            {
                var node = state;
                uint flags = 0;
                for (var bit = 3; bit >= 0 && (flags & Fail) == 0; bit--)
                {
                    var child = children[node * 2 + ((nibble >> bit) & 1)];
                    if (child > 0) { node = child; continue; }
                    var sym = ~child;
                    flags = sym == Eos ? Fail : Emit | (uint)sym << 8;
                    node = 0;
                }
                Transitions[state * 16 + nibble] = (uint)node | flags;
            }
        }

        Accepting = new bool[256];
        var ones = 0;
        Accepting[0] = true;
        for (var depth = 1; depth <= 7; depth++)
        {
            ones = children[ones * 2 + 1];
            Accepting[ones] = true;
        }
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
        var table = Transitions;
        var state = 0;
        var n = 0;
        foreach (var b in src)
        {
            var t = table[(state << 4) | (b >> 4)];
            if ((t & (Emit | Fail)) != 0)
            {
                if ((t & Fail) != 0) return -1;
                if (n == dst.Length) return -2;
                dst[n++] = (byte)(t >> 8);
            }
            state = (int)(t & 0xff);

            t = table[(state << 4) | (b & 0xf)];
            if ((t & (Emit | Fail)) != 0)
            {
                if ((t & Fail) != 0) return -1;
                if (n == dst.Length) return -2;
                dst[n++] = (byte)(t >> 8);
            }
            state = (int)(t & 0xff);
        }
        return Accepting[state] ? n : -1;
    }
}
