using System.Text.Json;
using Collector.Http2;
using Collector.Tests.Support;
using FsCheck;
using FsCheck.Fluent;

namespace Collector.Tests.Http2;

/// <summary>HPACK decoding against an independent encoder (Debian's python3-hpack), against every
/// representation our own test encoder can choose, and against hostile bytes; plus the steady state
/// allocating nothing.</summary>
public sealed class HpackPropertyTests
{
    private static string Script => Path.Combine(Repo.Root, "tests", "Collector.Tests", "Http2", "hpack_reference.py");

    private static JsonElement Reference(string args, string? stdin = null)
    {
        var (code, stdout, stderr) = Shell.Run(Clients.Python, $"\"{Script}\" {args}", TimeSpan.FromSeconds(120), stdin);
        Assert.True(code == 0, $"hpack_reference.py exited {code} (is python3-hpack installed for {Clients.Python}?): {stderr}");
        return JsonDocument.Parse(stdout).RootElement;
    }

    private static Config Runs(int n) => Config.QuickThrowOnFailure.WithMaxTest(n);

    [Fact]
    public void Static_table_and_huffman_code_match_python_hpack()
    {
        var t = Reference("--tables");
        var statics = t.GetProperty("static");
        Assert.Equal(HpackStaticTable.Count, statics.GetArrayLength());
        for (var i = 1; i <= HpackStaticTable.Count; i++)
        {
            Assert.Equal(Convert.FromHexString(statics[i - 1][0].GetString()!), HpackStaticTable.Name(i).ToArray());
            Assert.Equal(Convert.FromHexString(statics[i - 1][1].GetString()!), HpackStaticTable.Value(i).ToArray());
        }
        var codes = t.GetProperty("codes");
        var lengths = t.GetProperty("lengths");
        for (var sym = 0; sym <= Huffman.Eos; sym++)
        {
            Assert.Equal(lengths[sym].GetInt32(), Huffman.Length(sym));
            Assert.Equal(codes[sym].GetUInt32(), Huffman.Code(sym));
        }
    }

    private sealed record BlockSpec(int[] TableSizes, bool Huffman, List<HpackHeader> Headers);

    private static readonly int[] EncoderSizes = [0, 64, 256, 1024, 4096, 8192];

    private static List<BlockSpec> Connection(Random r, int blocks)
    {
        var list = new List<BlockSpec>();
        for (var i = 0; i < blocks; i++)
        {
            var sizes = r.Next(12) == 0
                ? Enumerable.Range(0, 1 + r.Next(2)).Select(_ => EncoderSizes[r.Next(EncoderSizes.Length)]).ToArray()
                : [];
            list.Add(new BlockSpec(sizes, r.Next(2) == 0, HpackWorkload.Headers(r, r.Next(0, 13), longValues: r.Next(4) == 0)));
        }
        return list;
    }

    /// <summary>Same field, or reported unknown (with the right name when it says it knows it).</summary>
    private static void AssertNeverWrong(IReadOnlyList<string> expected, IReadOnlyList<string> got, string where)
    {
        Assert.True(expected.Count == got.Count, $"{where}: {got.Count} fields, expected {expected.Count}");
        for (var i = 0; i < got.Count; i++)
        {
            if (got[i] == HpackRecorder.Marker) continue;
            if (got[i].StartsWith(HpackRecorder.Marker, StringComparison.Ordinal))
                Assert.True(expected[i].StartsWith(got[i][HpackRecorder.Marker.Length..] + ": ", StringComparison.Ordinal),
                    $"{where} field {i}: {got[i]} vs {expected[i]}");
            else Assert.True(expected[i] == got[i], $"{where} field {i}: {got[i]} vs {expected[i]}");
        }
    }

    [Fact]
    public void Decodes_exactly_what_python_hpack_encodes_and_never_misnames_when_behind()
    {
        var r = new Random(7541);
        var connections = Enumerable.Range(0, 4).Select(_ => Connection(r, 150)).ToList();
        var spec = new
        {
            connections = connections.Select(c => new
            {
                blocks = c.Select(b => new
                {
                    table_sizes = b.TableSizes,
                    huffman = b.Huffman,
                    headers = b.Headers.Select(h => new object[] { Convert.ToHexString(h.Name), Convert.ToHexString(h.Value), h.Sensitive }),
                }),
            }),
        };
        var encoded = Reference("", JsonSerializer.Serialize(spec)).GetProperty("connections");

        int smallKnown = 0, smallUnknown = 0, joinedKnown = 0, joinedUnknown = 0, blocks = 0;
        for (var c = 0; c < connections.Count; c++)
        {
            var full = new HpackDecoder();
            var small = new HpackDecoder(maxTableSizeCap: 400);
            var joined = new HpackDecoder();
            foreach (var d in new[] { full, small, joined }) d.SetProtocolMaxTableSize(8192);
            var joinAt = 20 + r.Next(40);
            var lostAt = joinAt + 30 + r.Next(40);

            for (var b = 0; b < connections[c].Count; b++)
            {
                var where = $"connection {c} block {b}";
                var block = Convert.FromHexString(encoded[c][b][0].GetString()!);
                var expected = connections[c][b].Headers.Select(h => HpackRecorder.Line(h.Name, h.Value)).ToList();
                blocks++;

                var got = new HpackRecorder();
                Assert.True(full.Decode(block, got) is null, where);
                Assert.Equal(expected, got.Lines);
                Assert.Equal(encoded[c][b][1].GetInt32(), full.TableSize);
                Assert.Equal(encoded[c][b][2].GetInt32(), full.KnownEntries);
                Assert.True(full.Synced, where);

                got = new HpackRecorder();
                Assert.True(small.Decode(block, got) is null, where);
                AssertNeverWrong(expected, got.Lines, where + " (cap 400)");
                Assert.InRange(small.TableSize, 0, 400);
                smallUnknown += got.Unknown;
                smallKnown += got.Lines.Count - got.Unknown;

                // joins at joinAt, then misses the block at lostAt
                if (b < joinAt) continue;
                if (b == joinAt || b == lostAt) joined.MarkUnsynced();
                if (b == lostAt) continue;
                got = new HpackRecorder();
                Assert.True(joined.Decode(block, got) is null, where + " (joined)");
                AssertNeverWrong(expected, got.Lines, where + " (joined)");
                Assert.InRange(joined.TableSize, 0, 8192);
                joinedUnknown += got.Unknown;
                joinedKnown += got.Lines.Count - got.Unknown;
            }
        }
        Assert.True(blocks >= 600);
        Assert.True(smallUnknown > 0 && smallKnown > smallUnknown, $"cap 400: {smallKnown} known, {smallUnknown} unknown");
        Assert.True(joinedUnknown > 0 && joinedKnown > joinedUnknown, $"joined: {joinedKnown} known, {joinedUnknown} unknown");
    }

    [Fact]
    public void Decoding_does_not_depend_on_the_representation_the_encoder_chose()
    {
        var r = new Random(42);
        for (var connection = 0; connection < 5; connection++)
        {
            var lists = Enumerable.Range(0, 120).Select(i => (
                Sizes: r.Next(15) == 0 ? new[] { EncoderSizes[r.Next(EncoderSizes.Length)] } : [],
                Headers: HpackWorkload.Headers(r, r.Next(0, 10), longValues: r.Next(5) == 0))).ToList();
            var outputs = new List<List<string>>();
            for (var variant = 0; variant < 4; variant++)
            {
                var enc = new HpackTestEncoder(connection * 100 + variant);
                var d = new HpackDecoder();
                d.SetProtocolMaxTableSize(8192);
                var all = new List<string>();
                foreach (var (sizes, headers) in lists)
                {
                    var rec = new HpackRecorder();
                    Assert.Null(d.Decode(enc.Encode(headers, sizes), rec));
                    Assert.Equal(headers.Select(h => HpackRecorder.Line(h.Name, h.Value)), rec.Lines);
                    Assert.Equal(enc.Size, d.TableSize);
                    Assert.Equal(enc.Entries, d.KnownEntries);
                    all.AddRange(rec.Lines);
                }
                outputs.Add(all);
            }
            foreach (var o in outputs.Skip(1)) Assert.Equal(outputs[0], o);
        }
    }

    // Bytes that often make sense as a field's first byte: indexed, literal with indexing, size
    // update, literals without indexing, a few string lengths and continuation bytes.
    private static readonly byte[] Plausible =
        [0x80, 0xbe, 0xc0, 0xff, 0x40, 0x7e, 0x7f, 0x20, 0x3f, 0x00, 0x10, 0x0f, 0x81, 0x05, 0x61, 0xe1, 0x1f, 0x01];

    private static byte[] RandomBlock(Random r)
    {
        var block = new byte[r.Next(4) == 0 ? r.Next(0, 400) : r.Next(0, 40)];
        r.NextBytes(block);
        if (r.Next(3) == 0)
            for (var i = 0; i < block.Length; i++) block[i] = Plausible[r.Next(Plausible.Length)];
        return block;
    }

    private static void AssertBounded(HpackDecoder d, int cap)
    {
        Assert.InRange(d.MaxTableSize, 0, cap);
        Assert.InRange(d.TableSize, 0, d.MaxTableSize);
        Assert.InRange(d.KnownEntries, 0, d.TableSize / 32);
    }

    [Fact]
    public void Random_bytes_never_throw_and_stay_within_the_cap()
    {
        var arb = Gen.Zip(Gen.Zip(Gen.Elements(0, 31, 100, 512, 4096), Gen.Elements(false, true)), Gen.Choose(0, int.MaxValue)).ToArbitrary();
        Prop.ForAll(arb, t =>
        {
            var ((cap, joined), seed) = t;
            var r = new Random(seed);
            var d = new HpackDecoder(maxTableSizeCap: cap, maxStringBytes: 256);
            d.SetProtocolMaxTableSize(1 << 20);
            if (joined) d.MarkUnsynced();
            for (var i = 0; i < 20; i++)
            {
                d.Decode(RandomBlock(r), new HpackRecorder());
                AssertBounded(d, cap);
            }
        }).Check(Runs(3000));
    }

    [Fact]
    public void Corrupted_valid_blocks_never_throw_and_stay_within_the_cap()
    {
        var arb = Gen.Zip(Gen.Choose(0, int.MaxValue), Gen.Elements(64, 300, 4096)).ToArbitrary();
        Prop.ForAll(arb, t =>
        {
            var (seed, cap) = t;
            var r = new Random(seed);
            var enc = new HpackTestEncoder(seed);
            var d = new HpackDecoder(maxTableSizeCap: cap, maxStringBytes: 1024);
            d.SetProtocolMaxTableSize(8192);
            for (var i = 0; i < 30; i++)
            {
                var sizes = r.Next(8) == 0 ? new[] { EncoderSizes[r.Next(EncoderSizes.Length)] } : [];
                var block = enc.Encode(HpackWorkload.Headers(r, r.Next(1, 8), longValues: r.Next(3) == 0), sizes);
                switch (r.Next(5))
                {
                    case 0 when block.Length > 0: block[r.Next(block.Length)] ^= (byte)(1 << r.Next(8)); break;
                    case 1 when block.Length > 0: block[r.Next(block.Length)] = (byte)r.Next(256); break;
                    case 2: block = block[..r.Next(block.Length + 1)]; break;
                }
                d.Decode(block, new HpackRecorder());
                AssertBounded(d, cap);
                if (r.Next(10) == 0) d.MarkUnsynced();
            }
        }).Check(Runs(500));
    }

    private sealed class CountingSink : IHpackHeaderSink
    {
        public long Fields, Bytes, Unknown;

        public void OnHeader(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value)
        {
            Fields++;
            Bytes += name.Length + value.Length + (name.IsEmpty ? 0 : name[0]) + (value.IsEmpty ? 0 : value[^1]);
        }

        public void OnUnknownField(ReadOnlySpan<byte> name, bool nameKnown) => Unknown++;
    }

    [Fact]
    public void Steady_state_decoding_allocates_nothing()
    {
        var r = new Random(3);
        var enc = new HpackTestEncoder(11);
        var blocks = new List<byte[]>();
        for (var i = 0; i < 500; i++)
        {
            // The first block empties the table, so decoding the list again replays the same states.
            int[] sizes = i == 0 ? [0, 4096] : r.Next(40) == 0 ? [r.Next(256, 4097)] : [];
            blocks.Add(enc.Encode(HpackWorkload.Headers(r, r.Next(1, 14), longValues: r.Next(6) == 0), sizes));
        }
        var d = new HpackDecoder();
        var sink = new CountingSink();
        var errors = 0;
        for (var pass = 0; pass < 3; pass++)
            foreach (var b in blocks)
                if (d.Decode(b, sink) is not null) errors++;
        Assert.Equal(0, errors);

        var fieldsBefore = sink.Fields;
        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var pass = 0; pass < 10; pass++)
            foreach (var b in blocks)
                if (d.Decode(b, sink) is not null) errors++;
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.Equal(0, errors);
        Assert.True(sink.Fields - fieldsBefore > 10 * 2000, $"{sink.Fields - fieldsBefore} fields");
        Assert.Equal(0, allocated);
    }
}
