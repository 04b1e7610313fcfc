using System.Text;
using Collector.Http2;

namespace Collector.Tests.Http2;

/// <summary>HPACK decoding by example: RFC 7541 Appendix C, size updates, malformed blocks, and a
/// decoder that joined mid-connection or keeps less than the encoder's table.</summary>
public sealed class HpackDecoderTests
{
    private static byte[] Hex(string hex) => Convert.FromHexString(hex.Replace(" ", ""));

    private static List<string> Decode(HpackDecoder d, string hex) => Decode(d, Hex(hex));

    private static List<string> Decode(HpackDecoder d, byte[] block)
    {
        var rec = new HpackRecorder();
        var error = d.Decode(block, rec);
        Assert.True(error is null, $"unexpected {error}");
        return rec.Lines;
    }

    private static string? DecodeError(HpackDecoder d, string hex) => d.Decode(Hex(hex), new HpackRecorder());

    /// <summary>The dynamic table as seen through indexed references 62.. (which change nothing).</summary>
    private static List<string> Table(HpackDecoder d, int entries)
    {
        var block = new List<byte>();
        for (var i = 0; i < entries; i++) HpackTestEncoder.WriteInteger(block, 62 + i, 7, 0x80);
        return Decode(d, block.ToArray());
    }

    private static void AssertTable(HpackDecoder d, int size, params string[] entries)
    {
        Assert.Equal(entries.Length, d.KnownEntries);
        Assert.Equal(size, d.TableSize);
        Assert.Equal(entries, Table(d, entries.Length));
    }

    // ---- RFC 7541 Appendix C ----

    [Fact]
    public void C2_1_literal_with_indexing()
    {
        var d = new HpackDecoder();
        Assert.Equal(["custom-key: custom-header"], Decode(d, "400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572"));
        AssertTable(d, 55, "custom-key: custom-header");
    }

    [Fact]
    public void C2_2_literal_without_indexing()
    {
        var d = new HpackDecoder();
        Assert.Equal([":path: /sample/path"], Decode(d, "040c 2f73 616d 706c 652f 7061 7468"));
        AssertTable(d, 0);
    }

    [Fact]
    public void C2_3_literal_never_indexed()
    {
        var d = new HpackDecoder();
        Assert.Equal(["password: secret"], Decode(d, "1008 7061 7373 776f 7264 0673 6563 7265 74"));
        AssertTable(d, 0);
    }

    [Fact]
    public void C2_4_indexed()
    {
        var d = new HpackDecoder();
        Assert.Equal([":method: GET"], Decode(d, "82"));
        AssertTable(d, 0);
    }

    private static readonly string[] RequestsPlain =
    [
        "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
        "8286 84be 5808 6e6f 2d63 6163 6865",
        "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
    ];

    private static readonly string[] RequestsHuffman =
    [
        "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
        "8286 84be 5886 a8eb 1064 9cbf",
        "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
    ];

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void C3_C4_requests(bool huffman)
    {
        var blocks = huffman ? RequestsHuffman : RequestsPlain;
        var d = new HpackDecoder();
        Assert.Equal([":method: GET", ":scheme: http", ":path: /", ":authority: www.example.com"], Decode(d, blocks[0]));
        AssertTable(d, 57, ":authority: www.example.com");

        Assert.Equal([":method: GET", ":scheme: http", ":path: /", ":authority: www.example.com", "cache-control: no-cache"],
            Decode(d, blocks[1]));
        AssertTable(d, 110, "cache-control: no-cache", ":authority: www.example.com");

        Assert.Equal([":method: GET", ":scheme: https", ":path: /index.html", ":authority: www.example.com", "custom-key: custom-value"],
            Decode(d, blocks[2]));
        AssertTable(d, 164, "custom-key: custom-value", "cache-control: no-cache", ":authority: www.example.com");
        Assert.True(d.Synced);
    }

    private static readonly string[] ResponsesPlain =
    [
        "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3120 474d 546e " +
        "1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
        "4803 3330 37c1 c0bf",
        "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d 54c0 5a04 677a 6970 7738 666f 6f3d " +
        "4153 444a 4b48 514b 425a 584f 5157 454f 5049 5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 " +
        "7369 6f6e 3d31",
    ];

    private static readonly string[] ResponsesHuffman =
    [
        "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 2d1b ff6e 919d 29ad 1718 63c7 8f0b " +
        "97c8 e9ae 82ae 43d3",
        "4883 640e ffc1 c0bf",
        "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab 77ad 94e7 821d d7f2 e6c7 b335 dfdf " +
        "cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07",
    ];

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void C5_C6_responses_evict_at_256(bool huffman)
    {
        var blocks = huffman ? ResponsesHuffman : ResponsesPlain;
        var d = new HpackDecoder();
        // The examples assume a 256-byte table from the start; on a real connection the encoder says so
        // with a size update (3f e1 01 = 256) in its first block.
        Assert.Empty(Decode(d, "3fe101"));
        Assert.Equal(256, d.MaxTableSize);

        const string date1 = "date: Mon, 21 Oct 2013 20:13:21 GMT";
        const string location = "location: https://www.example.com";
        Assert.Equal([":status: 302", "cache-control: private", date1, location], Decode(d, blocks[0]));
        AssertTable(d, 222, location, date1, "cache-control: private", ":status: 302");

        Assert.Equal([":status: 307", "cache-control: private", date1, location], Decode(d, blocks[1]));
        AssertTable(d, 222, ":status: 307", location, date1, "cache-control: private");

        const string cookie = "set-cookie: foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1";
        const string date2 = "date: Mon, 21 Oct 2013 20:13:22 GMT";
        Assert.Equal([":status: 200", "cache-control: private", date2, location, "content-encoding: gzip", cookie], Decode(d, blocks[2]));
        AssertTable(d, 215, cookie, "content-encoding: gzip", date2);
        Assert.True(d.Synced);
        Assert.Equal("hpack_bad_index", DecodeError(d, "c1")); // the fourth entry is gone
    }

    // ---- size updates ----

    [Fact]
    public void Several_size_updates_at_the_start_apply_in_order()
    {
        var d = new HpackDecoder();
        Decode(d, RequestsPlain[0]);
        Decode(d, RequestsPlain[1]);
        // 0 (evict everything), then back to 4096 (3f e1 1f), then a field
        Assert.Equal([":method: GET"], Decode(d, "20 3fe11f 82"));
        AssertTable(d, 0);
        Assert.Equal(4096, d.MaxTableSize);
        Assert.True(d.Synced);
    }

    [Fact]
    public void Size_update_to_zero_evicts_everything()
    {
        var d = new HpackDecoder();
        foreach (var b in RequestsPlain) Decode(d, b);
        Assert.Equal(3, d.KnownEntries);
        Assert.Empty(Decode(d, "20"));
        AssertTable(d, 0);
        Assert.Equal(0, d.MaxTableSize);
        Assert.Equal("hpack_bad_index", DecodeError(d, "be"));
    }

    [Fact]
    public void Size_update_below_the_table_evicts_oldest_first()
    {
        var d = new HpackDecoder();
        foreach (var b in RequestsPlain) Decode(d, b);
        // 110 = 31 + 79: keeps custom-key (54) and cache-control (53), drops :authority (57)
        Assert.Empty(Decode(d, "3f 4f"));
        AssertTable(d, 107, "custom-key: custom-value", "cache-control: no-cache");
    }

    [Fact]
    public void Size_update_after_a_field_is_misplaced()
    {
        var d = new HpackDecoder();
        Assert.Equal("hpack_size_update_misplaced", DecodeError(d, "82 20"));
        Assert.False(d.Synced);
    }

    [Fact]
    public void Size_update_over_the_protocol_limit_is_an_error()
    {
        var d = new HpackDecoder();
        d.SetProtocolMaxTableSize(100);
        Assert.Equal("hpack_size_update_over_limit", DecodeError(d, "3f 46")); // 101
        var ok = new HpackDecoder();
        ok.SetProtocolMaxTableSize(100);
        Assert.Empty(Decode(ok, "3f 45")); // 100
        Assert.Equal(100, ok.MaxTableSize);
    }

    [Fact]
    public void A_lower_protocol_limit_waits_for_the_encoder_size_update()
    {
        var d = new HpackDecoder();
        foreach (var b in RequestsPlain) Decode(d, b);
        d.SetProtocolMaxTableSize(64);
        // Blocks the encoder sent before it saw the SETTINGS still use the old table.
        AssertTable(d, 164, "custom-key: custom-value", "cache-control: no-cache", ":authority: www.example.com");
        Assert.Empty(Decode(d, "3f 21")); // 64
        AssertTable(d, 54, "custom-key: custom-value");
    }

    // ---- representations and malformed blocks ----

    [Fact]
    public void Never_indexed_and_without_indexing_literals_with_indexed_names_leave_the_table_alone()
    {
        var d = new HpackDecoder();
        Decode(d, RequestsPlain[0]);
        // never indexed, name = static 23 (authorization): 1f 08; without indexing, name = dynamic 62
        Assert.Equal(["authorization: secret", ":authority: other"], Decode(d, "1f08 06 736563726574 0f2f 05 6f74686572"));
        AssertTable(d, 57, ":authority: www.example.com");
    }

    [Fact]
    public void Literal_with_indexing_may_name_the_entry_it_evicts()
    {
        var d = new HpackDecoder();
        Assert.Empty(Decode(d, "3f 1b")); // 58: room for one :authority entry only
        Decode(d, RequestsPlain[0]);
        // 7e = literal with indexing, name = dynamic 62, which this insert evicts
        Assert.Equal([":authority: www.example.org"], Decode(d, "7e 0f 7777772e6578616d706c652e6f7267"));
        AssertTable(d, 57, ":authority: www.example.org");
    }

    [Fact]
    public void Index_zero_and_indices_past_the_tables_are_bad()
    {
        Assert.Equal("hpack_bad_index", DecodeError(new HpackDecoder(), "80"));
        Assert.Equal("hpack_bad_index", DecodeError(new HpackDecoder(), "be"));
        Assert.Equal("hpack_bad_index", DecodeError(new HpackDecoder(), "7e 01 61"));
        Assert.Equal("hpack_bad_index", DecodeError(new HpackDecoder(), "0f 2f 01 61")); // 62, 4-bit prefix
        var max = new List<byte>();
        HpackTestEncoder.WriteInteger(max, int.MaxValue, 7, 0x80);
        Assert.Equal("hpack_bad_index", new HpackDecoder().Decode(max.ToArray(), new HpackRecorder()));
    }

    [Fact]
    public void Integers_past_int_max_or_with_too_many_bytes_overflow()
    {
        Assert.Equal("hpack_integer_overflow", DecodeError(new HpackDecoder(), "ff ffffffff 0f"));
        Assert.Equal("hpack_integer_overflow", DecodeError(new HpackDecoder(), "ff 8080808080 00"));
        Assert.Equal("hpack_integer_overflow", DecodeError(new HpackDecoder(), "00 7f ffffffff7f"));
        // zero padding within five bytes is still an integer (index 127, past the tables here)
        Assert.Equal("hpack_bad_index", DecodeError(new HpackDecoder(), "ff 80808080 00"));
    }

    [Fact]
    public void Huffman_strings_reject_eos_and_bad_padding()
    {
        // literal without indexing, name "a", Huffman value
        Assert.Equal(["a: a"], Decode(new HpackDecoder(), "00 01 61 81 1f"));               // 00011 + 111
        Assert.Equal("hpack_huffman", DecodeError(new HpackDecoder(), "00 01 61 84 ffffffff")); // EOS
        Assert.Equal("hpack_huffman", DecodeError(new HpackDecoder(), "00 01 61 82 1fff"));     // 11 bits of padding
        Assert.Equal("hpack_huffman", DecodeError(new HpackDecoder(), "00 01 61 81 18"));       // padding 000
        Assert.Equal("hpack_huffman", DecodeError(new HpackDecoder(), "00 01 61 81 ff"));       // padding alone, 8 bits
        Assert.Equal(["a: "], Decode(new HpackDecoder(), "00 01 61 80"));                    // empty Huffman string
    }

    [Fact]
    public void Huffman_code_is_the_rfc_one()
    {
        Assert.Equal((0x1ff8u, 13), (Huffman.Code(0), Huffman.Length(0)));
        Assert.Equal((0x3u, 5), (Huffman.Code('a'), Huffman.Length('a')));
        Assert.Equal((0x7fff0u, 19), (Huffman.Code('\\'), Huffman.Length('\\')));
        Assert.Equal((0x3ffffeeu, 26), (Huffman.Code(255), Huffman.Length(255)));
        Assert.Equal((0x3fffffffu, 30), (Huffman.Code(Huffman.Eos), Huffman.Length(Huffman.Eos)));
        var all = Enumerable.Range(0, 256).Select(i => (byte)i).ToArray();
        var encoded = HpackTestEncoder.HuffmanEncode(all);
        var dst = new byte[256];
        Assert.Equal(256, Huffman.Decode(encoded, dst));
        Assert.Equal(all, dst);
        Assert.Equal(-2, Huffman.Decode(encoded, new byte[255]));
    }

    [Fact]
    public void Huffman_decoding_agrees_with_a_bit_by_bit_decoder_on_random_and_broken_input()
    {
        // the reference walks the code one bit at a time from Code/Length alone; the decoder under
        // test uses look-up tables, so strings of every symbol, cut or padded wrongly, must agree
        var rng = new Random(7541);
        for (var round = 0; round < 20_000; round++)
        {
            byte[] input;
            if (round % 3 == 0)
            {
                input = new byte[rng.Next(0, 24)];
                rng.NextBytes(input); // mostly invalid
            }
            else
            {
                var text = new byte[rng.Next(0, 40)];
                for (var i = 0; i < text.Length; i++)
                    text[i] = (byte)(rng.Next(4) == 0 ? rng.Next(256) : rng.Next(0x20, 0x7f));
                input = HpackTestEncoder.HuffmanEncode(text);
                if (round % 3 == 2 && input.Length > 0)
                {
                    // a flipped bit, a dropped last byte or an extra byte of padding
                    switch (rng.Next(3))
                    {
                        case 0: input[rng.Next(input.Length)] ^= (byte)(1 << rng.Next(8)); break;
                        case 1: input = input[..^1]; break;
                        default: input = [.. input, 0xff]; break;
                    }
                }
            }
            var expected = ReferenceHuffman(input, out var expectedBytes);
            var dst = new byte[64];
            var n = Huffman.Decode(input, dst);
            Assert.True(expected == n, $"input {Convert.ToHexString(input)}: expected {expected}, got {n}");
            if (n >= 0) Assert.Equal(expectedBytes, dst[..n]);
            if (n > 0) Assert.Equal(-2, Huffman.Decode(input, new byte[n - 1]));
        }
    }

    private static int ReferenceHuffman(byte[] input, out byte[] output)
    {
        var codes = new Dictionary<(uint Code, int Length), int>();
        for (var sym = 0; sym <= Huffman.Eos; sym++) codes[(Huffman.Code(sym), Huffman.Length(sym))] = sym;
        var result = new List<byte>();
        output = [];
        uint code = 0;
        var length = 0;
        for (var i = 0; i < input.Length * 8; i++)
        {
            code = code << 1 | (uint)((input[i / 8] >> (7 - i % 8)) & 1);
            length++;
            if (!codes.TryGetValue((code, length), out var sym)) continue;
            if (sym == Huffman.Eos) return -1;
            result.Add((byte)sym);
            code = 0;
            length = 0;
        }
        // the rest: fewer than 8 bits, all ones
        if (length > 7 || code != (1u << length) - 1) return -1;
        output = result.ToArray();
        return output.Length;
    }

    [Fact]
    public void Strings_longer_than_the_limit_are_rejected()
    {
        var d = new HpackDecoder(maxStringBytes: 16);
        Assert.Equal("hpack_string_too_long", DecodeError(d, "00 11 " + new string('6', 34) + " 00"));
        var h = new HpackDecoder(maxStringBytes: 16);
        var block = new List<byte> { 0x00, 0x01, 0x61 };
        HpackTestEncoder.WriteString(block, Encoding.ASCII.GetBytes(new string('a', 17)), huffman: true);
        Assert.Equal("hpack_string_too_long", h.Decode(block.ToArray(), new HpackRecorder()));
        var fits = new HpackDecoder(maxStringBytes: 17);
        Assert.Null(fits.Decode(block.ToArray(), new HpackRecorder()));
    }

    [Fact]
    public void Blocks_cut_anywhere_never_throw_and_fail_only_between_fields()
    {
        var r = new Random(7541);
        var blocks = new List<(byte[] Block, HashSet<int> Boundaries)>();
        for (var i = 0; i < 40; i++)
        {
            var enc = new HpackTestEncoder(r.Next());
            var block = enc.Encode(HpackWorkload.Headers(r, 1 + r.Next(8), longValues: true), [r.Next(4) == 0 ? 4096 : -1], out var boundaries);
            blocks.Add((block, boundaries));
        }
        foreach (var hex in new[] { RequestsPlain[0], RequestsHuffman[0], ResponsesPlain[0], ResponsesHuffman[0] })
            blocks.Add((Hex(hex), []));

        foreach (var (block, boundaries) in blocks)
        {
            for (var cut = 0; cut <= block.Length; cut++)
            {
                var d = new HpackDecoder();
                var error = d.Decode(block.AsSpan(0, cut), new HpackRecorder());
                if (boundaries.Count == 0) Assert.True(error is null or "hpack_truncated", error);
                else if (boundaries.Contains(cut)) Assert.Null(error);
                else
                {
                    Assert.Equal("hpack_truncated", error);
                    Assert.False(d.Synced);
                }
            }
        }
    }

    [Fact]
    public void A_sink_that_throws_leaves_the_decoder_unsynced()
    {
        var d = new HpackDecoder();
        Assert.Throws<InvalidOperationException>(() => d.Decode(Hex(RequestsPlain[0]), new ThrowingSink()));
        Assert.Equal(["⁇"], Decode(d, "be"));
        Assert.False(d.Synced);
    }

    private sealed class ThrowingSink : IHpackHeaderSink
    {
        public void OnHeader(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value) => throw new InvalidOperationException();
        public void OnUnknownField(ReadOnlySpan<byte> name, bool nameKnown) => throw new InvalidOperationException();
    }

    // ---- joined mid-connection, lost blocks, our cap ----

    [Fact]
    public void Unsynced_references_to_old_entries_are_unknown_and_new_entries_known()
    {
        var d = new HpackDecoder();
        d.MarkUnsynced();
        Assert.False(d.Synced);
        // old :authority at 62, then a new entry (C.2.1), which is now 62 and the old one 63
        Assert.Equal(["⁇", "custom-key: custom-header", "custom-key: custom-header", "⁇", "⁇"],
            Decode(d, "be 400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572 be bf c5"));
        Assert.Equal(1, d.KnownEntries);
        Assert.Equal(55, d.TableSize);
        // a literal naming an unknown entry still reports its place, and static names stay known
        Assert.Equal(["⁇", "accept: */*"], Decode(d, "0f 30 03 2a2f2a 0f 04 03 2a2f2a"));
        Assert.False(d.Synced);
    }

    [Fact]
    public void Unsynced_literal_with_indexing_and_unknown_name_inserts_a_placeholder()
    {
        var d = new HpackDecoder();
        d.MarkUnsynced();
        // 7f 00 = literal with indexing, name = dynamic 63 (unknown); then a known entry on top
        Assert.Equal(["⁇", "x: y"], Decode(d, "7f00 01 76 40 01 78 01 79"));
        Assert.Equal(["x: y", "⁇", "⁇"], Decode(d, "be bf c0"));
        Assert.Equal(1, d.KnownEntries);
        Assert.Equal(34, d.TableSize);
    }

    [Fact]
    public void A_lost_block_makes_earlier_entries_unknown()
    {
        var d = new HpackDecoder();
        foreach (var b in RequestsPlain) Decode(d, b);
        d.MarkUnsynced();
        Assert.Equal(0, d.KnownEntries);
        Assert.Equal(0, d.TableSize);
        Assert.Equal(["⁇", "⁇", "⁇"], Decode(d, "be bf c0"));
    }

    [Fact]
    public void Size_update_to_zero_resyncs_an_unsynced_decoder()
    {
        var d = new HpackDecoder();
        d.MarkUnsynced();
        Assert.Equal(["⁇"], Decode(d, "be"));
        Assert.Equal(["custom-key: custom-header"], Decode(d, "20 3fe11f 400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572"));
        Assert.True(d.Synced);
        Assert.Equal("hpack_bad_index", DecodeError(d, "bf"));
    }

    [Fact]
    public void Eviction_past_our_entries_resyncs()
    {
        var d = new HpackDecoder();
        d.MarkUnsynced();
        Assert.Empty(Decode(d, "3f 81 01")); // 160: the size update alone cannot prove the old entries gone
        Assert.False(d.Synced);
        var big = new List<byte> { 0x40 };
        HpackTestEncoder.WriteString(big, "n"u8.ToArray(), false);
        HpackTestEncoder.WriteString(big, Encoding.ASCII.GetBytes(new string('v', 100)), false);
        Decode(d, big.ToArray()); // 133 of 160: no older entry (>= 32 bytes) can still fit beside it
        Assert.True(d.Synced);
        Assert.Equal(["n: " + new string('v', 100)], Decode(d, "be"));
    }

    private static byte[] InsertLiteral(string name, int valueLength)
    {
        var block = new List<byte> { 0x40 };
        HpackTestEncoder.WriteString(block, Encoding.ASCII.GetBytes(name), false);
        HpackTestEncoder.WriteString(block, Encoding.ASCII.GetBytes(new string('v', valueLength)), false);
        return block.ToArray();
    }

    [Theory]
    [InlineData(4031, false)] // 4064 bytes: an unseen 32-byte entry may still sit beside it in 4096
    [InlineData(4032, true)]  // 4065 bytes: nothing older can have survived
    public void Insert_resyncs_only_when_no_older_entry_can_fit(int valueLength, bool resyncs)
    {
        var d = new HpackDecoder();
        d.MarkUnsynced();
        Assert.Empty(Decode(d, "3fe11f")); // 4096
        Decode(d, InsertLiteral("n", valueLength));
        Assert.Equal(resyncs, d.Synced);
        if (resyncs) Assert.Equal("hpack_bad_index", DecodeError(d, "bf"));
        else Assert.Equal([HpackRecorder.Marker], Decode(d, "bf"));
    }

    [Theory]
    [InlineData(132, false)] // 100 + 32: an unseen 32-byte entry may still fit
    [InlineData(131, true)]
    public void Size_update_resyncs_only_when_no_older_entry_can_fit(int max, bool resyncs)
    {
        var d = new HpackDecoder();
        d.MarkUnsynced();
        Decode(d, InsertLiteral("n", 67)); // 100 bytes
        var update = new List<byte>();
        HpackTestEncoder.WriteInteger(update, max, 5, 0x20);
        Assert.Empty(Decode(d, update.ToArray()));
        Assert.Equal(resyncs, d.Synced);
        Assert.Equal(["n: " + new string('v', 67)], Decode(d, "be"));
        if (resyncs) Assert.Equal("hpack_bad_index", DecodeError(d, "bf"));
        else Assert.Equal([HpackRecorder.Marker], Decode(d, "bf"));
    }

    [Fact]
    public void Cap_below_the_encoder_table_keeps_the_newest_entries()
    {
        var d = new HpackDecoder(maxTableSizeCap: 100);
        Decode(d, "400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572"); // 55
        Assert.True(d.Synced);
        Assert.Equal(["custom-key: custom-value"], Decode(d, "400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65")); // 54
        Assert.Equal(["custom-key: custom-value", "⁇"], Decode(d, "be bf"));
        Assert.Equal(1, d.KnownEntries);
        Assert.Equal(54, d.TableSize);
        Assert.Equal(100, d.MaxTableSize);
        Assert.False(d.Synced);
    }

    [Fact]
    public void An_entry_bigger_than_the_cap_keeps_its_name()
    {
        var d = new HpackDecoder(maxTableSizeCap: 100);
        var block = new List<byte> { 0x40 };
        HpackTestEncoder.WriteString(block, "x-big"u8.ToArray(), true);
        HpackTestEncoder.WriteString(block, Encoding.ASCII.GetBytes(new string('v', 200)), true);
        Assert.Equal(["x-big: " + new string('v', 200)], Decode(d, block.ToArray()));
        Assert.Equal(["⁇x-big"], Decode(d, "be"));
        Assert.False(d.Synced);
        Assert.Equal(0, d.KnownEntries);
        Assert.Equal(0, d.TableSize);
        // a literal naming it is known
        Assert.Equal(["x-big: small"], Decode(d, "0f2f 05 736d616c6c"));
    }

    [Theory]
    [InlineData(4096, 4096)]
    [InlineData(8192, 1500)]
    public void Entries_wrapping_around_the_ring_read_back_whole(int encoderMax, int cap)
    {
        var r = new Random(encoderMax + cap);
        var d = new HpackDecoder(maxTableSizeCap: cap);
        d.SetProtocolMaxTableSize(encoderMax);
        var sizeUpdate = new List<byte>();
        HpackTestEncoder.WriteInteger(sizeUpdate, encoderMax, 5, 0x20);
        Decode(d, sizeUpdate.ToArray());
        var model = new List<string>(); // newest first, as the encoder's table
        var sizes = new List<int>();
        for (var i = 0; i < 300; i++)
        {
            var block = new List<byte>();
            string line;
            int size;
            // entries we must still hold: the newest ones that fit in the cap together
            var fits = 0;
            for (var total = 0; fits < sizes.Count && (total += sizes[fits]) <= cap;) fits++;
            if (fits > 0 && r.Next(3) == 0)
            {
                // new value under the name of an existing entry (copied out of the ring before inserting)
                var index = r.Next(fits);
                var name = model[index][..model[index].IndexOf(": ", StringComparison.Ordinal)];
                var value = new string((char)('a' + r.Next(26)), r.Next(0, 700));
                HpackTestEncoder.WriteInteger(block, 62 + index, 6, 0x40);
                HpackTestEncoder.WriteString(block, Encoding.Latin1.GetBytes(value), r.Next(2) == 0);
                (line, size) = ($"{name}: {value}", 32 + name.Length + value.Length);
            }
            else
            {
                var name = "n" + i + new string('x', r.Next(0, 300));
                var value = new string((char)('A' + r.Next(26)), r.Next(0, r.Next(8) == 0 ? 1400 : 700));
                block.Add(0x40);
                HpackTestEncoder.WriteString(block, Encoding.Latin1.GetBytes(name), r.Next(2) == 0);
                HpackTestEncoder.WriteString(block, Encoding.Latin1.GetBytes(value), r.Next(2) == 0);
                (line, size) = ($"{name}: {value}", 32 + name.Length + value.Length);
            }
            Assert.Equal([line], Decode(d, block.ToArray()));
            model.Insert(0, line);
            sizes.Insert(0, size);
            while (sizes.Sum() > encoderMax)
            {
                model.RemoveAt(model.Count - 1);
                sizes.RemoveAt(sizes.Count - 1);
            }

            var got = Table(d, model.Count);
            var held = 0;
            for (var k = 0; k < model.Count; k++)
            {
                held += sizes[k];
                if (held <= cap || got[k] == model[k]) Assert.Equal(model[k], got[k]);
                else if (got[k] != HpackRecorder.Marker)
                {
                    Assert.StartsWith(HpackRecorder.Marker, got[k]);
                    Assert.StartsWith(got[k][HpackRecorder.Marker.Length..] + ": ", model[k]);
                }
            }
            Assert.InRange(d.TableSize, 0, cap);
        }
    }

    [Fact]
    public void Table_size_bomb_stays_within_the_cap()
    {
        var d = new HpackDecoder(maxTableSizeCap: 4096);
        d.SetProtocolMaxTableSize(1 << 30);
        var bomb = new List<byte>();
        HpackTestEncoder.WriteInteger(bomb, int.MaxValue, 5, 0x20);
        Assert.Equal("hpack_size_update_over_limit", d.Decode(bomb.ToArray(), new HpackRecorder()));
        Assert.InRange(d.TableSize, 0, 4096);

        var r = new Random(1);
        var legal = new List<byte>();
        HpackTestEncoder.WriteInteger(legal, 1 << 30, 5, 0x20);
        Assert.Empty(Decode(d, legal.ToArray()));
        Assert.Equal(4096, d.MaxTableSize);
        for (var i = 0; i < 2000; i++)
        {
            var block = new List<byte> { 0x40 };
            HpackTestEncoder.WriteString(block, Encoding.ASCII.GetBytes("n" + i), r.Next(2) == 0);
            var value = new byte[r.Next(0, 3000)];
            r.NextBytes(value);
            HpackTestEncoder.WriteString(block, value, r.Next(2) == 0);
            Decode(d, block.ToArray());
            Assert.InRange(d.TableSize, 0, 4096);
            Assert.InRange(d.KnownEntries, 0, 4096 / 32);
        }
    }
}

/// <summary>Records what a decoder reports: "name: value", "⁇name" (name known only) or "⁇". Bytes are
/// read as Latin-1, so the marker cannot come from a header.</summary>
internal sealed class HpackRecorder : IHpackHeaderSink
{
    public const string Marker = "⁇";

    public readonly List<string> Lines = [];
    public int Unknown;

    public void OnHeader(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value) =>
        Lines.Add(Encoding.Latin1.GetString(name) + ": " + Encoding.Latin1.GetString(value));

    public void OnUnknownField(ReadOnlySpan<byte> name, bool nameKnown)
    {
        Unknown++;
        Lines.Add(nameKnown ? Marker + Encoding.Latin1.GetString(name) : Marker);
    }

    public static string Line(byte[] name, byte[] value) => Encoding.Latin1.GetString(name) + ": " + Encoding.Latin1.GetString(value);
}

internal readonly record struct HpackHeader(byte[] Name, byte[] Value, bool Sensitive);

/// <summary>A small HPACK encoder for the tests that picks each field's representation at random
/// (indexed, literal with or without indexing or never indexed, name indexed or literal, Huffman or
/// not per string), so decoding can be checked against every way of saying the same thing.</summary>
internal sealed class HpackTestEncoder(int seed)
{
    private readonly Random _r = new(seed);
    private readonly List<(byte[] Name, byte[] Value)> _table = []; // newest first
    private int _size;
    private int _max = 4096;

    public int Size => _size;
    public int Entries => _table.Count;

    /// <summary>Encodes one block; sizeUpdates (-1 entries ignored) go first. boundaries: the offsets
    /// at which a prefix of the block is itself a complete block.</summary>
    public byte[] Encode(IReadOnlyList<HpackHeader> headers, IReadOnlyList<int> sizeUpdates, out HashSet<int> boundaries)
    {
        var o = new List<byte>();
        boundaries = [0];
        foreach (var s in sizeUpdates)
        {
            if (s < 0) continue;
            WriteInteger(o, s, 5, 0x20);
            _max = s;
            Evict(0);
            boundaries.Add(o.Count);
        }
        foreach (var h in headers)
        {
            Field(o, h);
            boundaries.Add(o.Count);
        }
        return o.ToArray();
    }

    public byte[] Encode(IReadOnlyList<HpackHeader> headers, IReadOnlyList<int> sizeUpdates) => Encode(headers, sizeUpdates, out _);

    private void Field(List<byte> o, HpackHeader h)
    {
        var exact = 0;
        var named = new List<int>();
        for (var i = 1; i <= 61 + _table.Count; i++)
        {
            var name = i <= 61 ? HpackStaticTable.Name(i) : _table[i - 62].Name;
            var value = i <= 61 ? HpackStaticTable.Value(i) : _table[i - 62].Value;
            if (!name.SequenceEqual(h.Name)) continue;
            named.Add(i);
            if (exact == 0 && value.SequenceEqual(h.Value)) exact = i;
        }
        if (exact != 0 && !h.Sensitive && _r.Next(4) != 0)
        {
            WriteInteger(o, exact, 7, 0x80);
            return;
        }

        var kind = h.Sensitive ? 2 : _r.Next(3); // 0 with incremental indexing, 1 without, 2 never indexed
        var nameIndex = named.Count > 0 && _r.Next(4) != 0 ? named[_r.Next(named.Count)] : 0;
        if (kind == 0) WriteInteger(o, nameIndex, 6, 0x40);
        else WriteInteger(o, nameIndex, 4, (byte)(kind == 1 ? 0x00 : 0x10));
        if (nameIndex == 0) WriteString(o, h.Name, _r.Next(2) == 0);
        WriteString(o, h.Value, _r.Next(2) == 0);
        if (kind == 0) Add(h.Name, h.Value);
    }

    private void Add(byte[] name, byte[] value)
    {
        var size = 32 + name.Length + value.Length;
        if (size > _max)
        {
            _table.Clear();
            _size = 0;
            return;
        }
        Evict(size);
        _table.Insert(0, (name, value));
        _size += size;
    }

    private void Evict(int room)
    {
        while (_table.Count > 0 && _size + room > _max)
        {
            var (n, v) = _table[^1];
            _size -= 32 + n.Length + v.Length;
            _table.RemoveAt(_table.Count - 1);
        }
    }

    public static void WriteInteger(List<byte> o, int value, int prefixBits, byte first)
    {
        var mask = (1 << prefixBits) - 1;
        if (value < mask)
        {
            o.Add((byte)(first | value));
            return;
        }
        o.Add((byte)(first | mask));
        var rest = (uint)(value - mask);
        while (rest >= 128)
        {
            o.Add((byte)(rest & 0x7f | 0x80));
            rest >>= 7;
        }
        o.Add((byte)rest);
    }

    public static void WriteString(List<byte> o, byte[] s, bool huffman)
    {
        var bytes = huffman ? HuffmanEncode(s) : s;
        WriteInteger(o, bytes.Length, 7, (byte)(huffman ? 0x80 : 0));
        o.AddRange(bytes);
    }

    public static byte[] HuffmanEncode(ReadOnlySpan<byte> s)
    {
        var o = new List<byte>();
        ulong acc = 0;
        var bits = 0;
        foreach (var b in s)
        {
            acc = acc << Huffman.Length(b) | Huffman.Code(b);
            bits += Huffman.Length(b);
            while (bits >= 8)
            {
                bits -= 8;
                o.Add((byte)(acc >> bits));
            }
        }
        if (bits > 0) o.Add((byte)(acc << (8 - bits) | (0xffu >> bits)));
        return o.ToArray();
    }
}

/// <summary>Random header lists that look like traffic: pseudo-headers, common names with repeated
/// values (so the dynamic table gets used), non-ASCII bytes, empty and long values.</summary>
internal static class HpackWorkload
{
    private static readonly string[] Names =
    [
        ":method", ":path", ":authority", ":scheme", ":status", "content-type", "content-length", "cookie", "set-cookie",
        "user-agent", "accept", "accept-encoding", "authorization", "x-request-id", "grpc-status", "grpc-message", "te",
    ];

    private static readonly string[] Values =
    [
        "GET", "POST", "/", "/index.html", "/api/v1/items?id=42", "https", "http", "200", "404", "application/grpc",
        "application/json", "gzip, deflate", "trailers", "example.com", "", "0",
    ];

    public static List<HpackHeader> Headers(Random r, int count, bool longValues)
    {
        var list = new List<HpackHeader>(count);
        for (var i = 0; i < count; i++) list.Add(new HpackHeader(Name(r), Value(r, longValues), r.Next(10) == 0));
        return list;
    }

    private static byte[] Name(Random r) => r.Next(10) switch
    {
        < 6 => Encoding.ASCII.GetBytes(Names[r.Next(Names.Length)]),
        < 8 => Encoding.ASCII.GetBytes("x-custom-" + r.Next(20)),
        8 => RandomBytes(r, r.Next(0, 12)),
        _ => [(byte)'x', 0xc3, 0xa9, (byte)(0x80 + r.Next(4))],
    };

    private static byte[] Value(Random r, bool longValues) => r.Next(12) switch
    {
        < 6 => Encoding.ASCII.GetBytes(Values[r.Next(Values.Length)]),
        < 8 => Encoding.ASCII.GetBytes("v" + r.Next(50)),
        < 10 => RandomBytes(r, r.Next(0, 40)),
        10 => longValues ? RandomBytes(r, r.Next(100, 1500)) : RandomBytes(r, r.Next(0, 60)),
        _ => Encoding.ASCII.GetBytes(new string((char)('a' + r.Next(26)), longValues ? r.Next(130, 400) : 5)),
    };

    private static byte[] RandomBytes(Random r, int n)
    {
        var b = new byte[n];
        r.NextBytes(b);
        return b;
    }
}
