using Collector.Http2;

namespace Collector.Fuzz;

/// <summary>The hpack target: one HpackDecoder (one direction of one connection) fed the input as
/// a sequence of records:
/// <code>
///   op   bits 0-1  kind: 0  header block  [len u16 LE][len bytes, cut short by the input's end]
///                        1  short block   [op >> 2 bytes] (0..63, no length field)
///                        2  SETTINGS_HEADER_TABLE_SIZE = [u16 LE] &lt;&lt; (op >> 2 &amp; 7)
///                        3  MarkUnsynced (a block went by unseen)
/// </code>
/// The decoder's memory cap and string limit are small (Cap, MaxString) so that their limits are
/// reached. Invariants (a broken one throws: a crash for afl): Decode never throws;
/// 0 ≤ TableSize ≤ MaxTableSize ≤ Cap and 32 per known entry; every field the sink is given fits
/// the limits.</summary>
public static class HpackTarget
{
    public const int Cap = 8192;
    public const int MaxString = 4096;

    private sealed class Sink : IHpackHeaderSink
    {
        public long Fields, Unknown, Bytes;
        public void OnHeader(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value)
        {
            Fields++;
            Check(name.Length <= Math.Max(MaxString, Cap) && value.Length <= Math.Max(MaxString, Cap),
                $"field of {name.Length} + {value.Length} bytes past the limits");
            foreach (var b in name) Bytes += b; // every byte readable
            foreach (var b in value) Bytes += b;
        }

        public void OnUnknownField(ReadOnlySpan<byte> name, bool nameKnown)
        {
            Unknown++;
            Check(nameKnown || name.IsEmpty, "an unknown name with bytes");
            Check(name.Length <= Math.Max(MaxString, Cap), $"name of {name.Length} bytes past the limits");
            foreach (var b in name) Bytes += b;
        }
    }

    private static readonly Sink s_sink = new();

    public static void Run(ReadOnlySpan<byte> s)
    {
        var decoder = new HpackDecoder(maxTableSizeCap: Cap, maxStringBytes: MaxString);
        var at = 0;
        while (at < s.Length)
        {
            var op = s[at++];
            switch (op & 3)
            {
                case 0:
                case 1:
                {
                    var len = (op & 3) == 1 ? op >> 2 : ReadU16(s, ref at);
                    len = Math.Min(len, s.Length - at);
                    _ = decoder.Decode(s.Slice(at, len), s_sink);
                    at += len;
                    break;
                }
                case 2:
                    decoder.SetProtocolMaxTableSize(ReadU16(s, ref at) << ((op >> 2) & 7));
                    break;
                default:
                    decoder.MarkUnsynced();
                    break;
            }
            var size = decoder.TableSize;
            var max = decoder.MaxTableSize;
            Check(size >= 0 && size <= max && max <= Cap, $"TableSize {size}, MaxTableSize {max}, cap {Cap}");
            Check(decoder.KnownEntries >= 0 && size >= 32L * decoder.KnownEntries,
                $"{decoder.KnownEntries} known entries in {size} bytes (32 each at least)");
        }
    }

    private static int ReadU16(ReadOnlySpan<byte> s, ref int at)
    {
        var v = 0;
        if (at < s.Length) v = s[at++];
        if (at < s.Length) v |= s[at++] << 8;
        return v;
    }

    private static void Check(bool ok, string what)
    {
        if (!ok) throw new InvariantBroken(what);
    }
}
