using System.Buffers.Binary;
using System.Text;

namespace Collector.Tests.Http2;

public enum H2Type : byte
{
    Data = 0, Headers = 1, Priority = 2, RstStream = 3, Settings = 4, PushPromise = 5, Ping = 6, GoAway = 7,
    WindowUpdate = 8, Continuation = 9,
}

[Flags]
public enum H2Flags : byte
{
    None = 0, EndStream = 0x1, Ack = 0x1, EndHeaders = 0x4, Padded = 0x8, Priority = 0x20,
}

public static class H2Setting
{
    public const ushort HeaderTableSize = 1, EnablePush = 2, MaxConcurrentStreams = 3, InitialWindowSize = 4,
        MaxFrameSize = 5, MaxHeaderListSize = 6;
}

/// <summary>A frame as read back from bytes: where it is and what its header says.</summary>
public readonly record struct H2Frame(int Offset, int Length, H2Type Type, byte Flags, uint Stream)
{
    public int End => Offset + 9 + Length;
    public bool Has(H2Flags f) => (Flags & (byte)f) != 0;
}

/// <summary>HTTP/2 frames written by hand (RFC 9113 §6), well-formed or not: every builder takes the
/// parts as given and checks nothing, and Raw writes any header over any payload.</summary>
public static class H2Frames
{
    public static readonly byte[] Preface = Encoding.ASCII.GetBytes("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

    /// <summary>A frame: 9-byte header (length, type, flags, stream) then the payload. declaredLength
    /// puts another length in the header than the payload's (a lie).</summary>
    public static byte[] Raw(byte type, byte flags, uint stream, ReadOnlySpan<byte> payload, int? declaredLength = null)
    {
        var length = declaredLength ?? payload.Length;
        var f = new byte[9 + payload.Length];
        f[0] = (byte)(length >> 16);
        f[1] = (byte)(length >> 8);
        f[2] = (byte)length;
        f[3] = type;
        f[4] = flags;
        BinaryPrimitives.WriteUInt32BigEndian(f.AsSpan(5), stream);
        payload.CopyTo(f.AsSpan(9));
        return f;
    }

    public static byte[] Frame(H2Type type, H2Flags flags, uint stream, ReadOnlySpan<byte> payload, int? declaredLength = null) =>
        Raw((byte)type, (byte)flags, stream, payload, declaredLength);

    /// <summary>Pad length byte, content, padding (padLength zero bytes). declaredPad writes another
    /// pad length than the padding there is.</summary>
    private static byte[] Padded(ReadOnlySpan<byte> prefix, ReadOnlySpan<byte> content, int? padLength, int? declaredPad)
    {
        var pad = padLength ?? 0;
        var withPad = padLength is not null || declaredPad is not null;
        var p = new byte[(withPad ? 1 : 0) + prefix.Length + content.Length + pad];
        var at = 0;
        if (withPad) p[at++] = (byte)(declaredPad ?? pad);
        prefix.CopyTo(p.AsSpan(at));
        at += prefix.Length;
        content.CopyTo(p.AsSpan(at));
        return p;
    }

    public static byte[] Data(uint stream, ReadOnlySpan<byte> data, bool endStream = false, int? padLength = null, int? declaredPad = null)
    {
        var flags = (endStream ? H2Flags.EndStream : 0) | (padLength is not null || declaredPad is not null ? H2Flags.Padded : 0);
        return Frame(H2Type.Data, flags, stream, Padded([], data, padLength, declaredPad));
    }

    public static byte[] Data(uint stream, string text, bool endStream = false) => Data(stream, Encoding.UTF8.GetBytes(text), endStream);

    public static byte[] Headers(uint stream, ReadOnlySpan<byte> block, bool endStream = false, bool endHeaders = true,
        int? padLength = null, (uint DependsOn, byte Weight, bool Exclusive)? priority = null, int? declaredPad = null)
    {
        var flags = (endStream ? H2Flags.EndStream : 0) | (endHeaders ? H2Flags.EndHeaders : 0) |
                    (padLength is not null || declaredPad is not null ? H2Flags.Padded : 0) | (priority is not null ? H2Flags.Priority : 0);
        var prio = priority is { } p ? PriorityFields(p.DependsOn, p.Weight, p.Exclusive) : [];
        return Frame(H2Type.Headers, flags, stream, Padded(prio, block, padLength, declaredPad));
    }

    private static byte[] PriorityFields(uint dependsOn, byte weight, bool exclusive)
    {
        var p = new byte[5];
        BinaryPrimitives.WriteUInt32BigEndian(p, dependsOn | (exclusive ? 0x8000_0000u : 0));
        p[4] = weight;
        return p;
    }

    public static byte[] Priority(uint stream, uint dependsOn = 0, byte weight = 15, bool exclusive = false) =>
        Frame(H2Type.Priority, 0, stream, PriorityFields(dependsOn, weight, exclusive));

    public static byte[] RstStream(uint stream, uint errorCode = 8 /* CANCEL */) => Frame(H2Type.RstStream, 0, stream, U32(errorCode));

    public static byte[] Settings(params (ushort Id, uint Value)[] settings)
    {
        var p = new byte[6 * settings.Length];
        for (var i = 0; i < settings.Length; i++)
        {
            BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(6 * i), settings[i].Id);
            BinaryPrimitives.WriteUInt32BigEndian(p.AsSpan(6 * i + 2), settings[i].Value);
        }
        return Frame(H2Type.Settings, 0, 0, p);
    }

    public static byte[] SettingsAck() => Frame(H2Type.Settings, H2Flags.Ack, 0, []);

    public static byte[] PushPromise(uint stream, uint promised, ReadOnlySpan<byte> block, bool endHeaders = true, int? padLength = null,
        int? declaredPad = null)
    {
        var flags = (endHeaders ? H2Flags.EndHeaders : 0) | (padLength is not null || declaredPad is not null ? H2Flags.Padded : 0);
        return Frame(H2Type.PushPromise, flags, stream, Padded(U32(promised), block, padLength, declaredPad));
    }

    public static byte[] Ping(ulong opaque = 0x0102030405060708, bool ack = false)
    {
        var p = new byte[8];
        BinaryPrimitives.WriteUInt64BigEndian(p, opaque);
        return Frame(H2Type.Ping, ack ? H2Flags.Ack : 0, 0, p);
    }

    public static byte[] GoAway(uint lastStream, uint errorCode = 0, string debug = "")
    {
        var d = Encoding.ASCII.GetBytes(debug);
        var p = new byte[8 + d.Length];
        BinaryPrimitives.WriteUInt32BigEndian(p, lastStream);
        BinaryPrimitives.WriteUInt32BigEndian(p.AsSpan(4), errorCode);
        d.CopyTo(p, 8);
        return Frame(H2Type.GoAway, 0, 0, p);
    }

    public static byte[] WindowUpdate(uint stream, uint increment) => Frame(H2Type.WindowUpdate, 0, stream, U32(increment));

    public static byte[] Continuation(uint stream, ReadOnlySpan<byte> block, bool endHeaders = true) =>
        Frame(H2Type.Continuation, endHeaders ? H2Flags.EndHeaders : 0, stream, block);

    /// <summary>A header block of any size as HEADERS then CONTINUATION frames of at most maxFrame
    /// bytes each.</summary>
    public static byte[] HeaderFrames(uint stream, ReadOnlySpan<byte> block, bool endStream = false, int maxFrame = 16384)
    {
        var first = Math.Min(maxFrame, block.Length);
        var frames = new List<byte[]> { Headers(stream, block[..first], endStream, endHeaders: first == block.Length) };
        for (var at = first; at < block.Length; at += maxFrame)
        {
            var n = Math.Min(maxFrame, block.Length - at);
            frames.Add(Continuation(stream, block.Slice(at, n), endHeaders: at + n == block.Length));
        }
        return Concat(frames.ToArray());
    }

    private static byte[] U32(uint v)
    {
        var p = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(p, v);
        return p;
    }

    public static byte[] Concat(params byte[][] parts)
    {
        var all = new byte[parts.Sum(p => p.Length)];
        var at = 0;
        foreach (var p in parts)
        {
            p.CopyTo(all, at);
            at += p.Length;
        }
        return all;
    }

    // ---- conversations in a few lines ----

    /// <summary>The client's first bytes: the preface and its SETTINGS.</summary>
    public static byte[] ClientStart(params (ushort Id, uint Value)[] settings) => Concat(Preface, Settings(settings));

    /// <summary>The server's first bytes: its SETTINGS and the acknowledgement of the client's.</summary>
    public static byte[] ServerStart(params (ushort Id, uint Value)[] settings) => Concat(Settings(settings), SettingsAck());

    /// <summary>A request's HEADERS frame (one block, no dynamic table).</summary>
    public static byte[] Request(uint stream, string method, string path, string authority = "example.com",
        IEnumerable<(string Name, string Value)>? headers = null, bool endStream = true) =>
        Headers(stream, Hpack.Request(method, path, authority, headers), endStream);

    public static byte[] Response(uint stream, int status, IEnumerable<(string Name, string Value)>? headers = null, bool endStream = true) =>
        Headers(stream, Hpack.Response(status, headers), endStream);

    /// <summary>Reads frame headers from offset on (the preface, when there, is skipped); stops at
    /// the first frame that does not end in the bytes.</summary>
    public static IEnumerable<H2Frame> ReadFrames(byte[] bytes, int offset = 0)
    {
        var at = offset;
        if (bytes.AsSpan(at).StartsWith(Preface)) at += Preface.Length;
        while (at + 9 <= bytes.Length)
        {
            var length = (bytes[at] << 16) | (bytes[at + 1] << 8) | bytes[at + 2];
            if (at + 9 + length > bytes.Length) yield break;
            yield return new H2Frame(at, length, (H2Type)bytes[at + 3], bytes[at + 4],
                BinaryPrimitives.ReadUInt32BigEndian(bytes.AsSpan(at + 5)) & 0x7FFF_FFFF);
            at += 9 + length;
        }
    }
}

public enum HpackIndexing : byte
{
    /// <summary>Literal with incremental indexing (0x40, 6-bit prefix): adds to the dynamic table.</summary>
    Incremental = 0x40,
    /// <summary>Literal without indexing (0x00, 4-bit prefix).</summary>
    Without = 0x00,
    /// <summary>Literal never indexed (0x10, 4-bit prefix).</summary>
    Never = 0x10,
}

/// <summary>An HPACK header block written by hand (RFC 7541): indexed fields, literals with any
/// indexing and raw strings (no Huffman), size updates, and raw bytes for broken encodings.</summary>
public sealed class Hpack
{
    /// <summary>RFC 7541 Appendix A: index i is StaticTable[i - 1].</summary>
    public static readonly (string Name, string Value)[] StaticTable =
    [
        (":authority", ""), (":method", "GET"), (":method", "POST"), (":path", "/"), (":path", "/index.html"),
        (":scheme", "http"), (":scheme", "https"), (":status", "200"), (":status", "204"), (":status", "206"),
        (":status", "304"), (":status", "400"), (":status", "404"), (":status", "500"), ("accept-charset", ""),
        ("accept-encoding", "gzip, deflate"), ("accept-language", ""), ("accept-ranges", ""), ("accept", ""),
        ("access-control-allow-origin", ""), ("age", ""), ("allow", ""), ("authorization", ""), ("cache-control", ""),
        ("content-disposition", ""), ("content-encoding", ""), ("content-language", ""), ("content-length", ""),
        ("content-location", ""), ("content-range", ""), ("content-type", ""), ("cookie", ""), ("date", ""),
        ("etag", ""), ("expect", ""), ("expires", ""), ("from", ""), ("host", ""), ("if-match", ""),
        ("if-modified-since", ""), ("if-none-match", ""), ("if-range", ""), ("if-unmodified-since", ""),
        ("last-modified", ""), ("link", ""), ("location", ""), ("max-forwards", ""), ("proxy-authenticate", ""),
        ("proxy-authorization", ""), ("range", ""), ("referer", ""), ("refresh", ""), ("retry-after", ""),
        ("server", ""), ("set-cookie", ""), ("strict-transport-security", ""), ("transfer-encoding", ""),
        ("user-agent", ""), ("vary", ""), ("via", ""), ("www-authenticate", ""),
    ];

    private readonly List<byte> _b = new();

    public int Length => _b.Count;
    public byte[] ToArray() => _b.ToArray();
    public static implicit operator byte[](Hpack h) => h.ToArray();

    /// <summary>An indexed field (1xxxxxxx): static 1-61, dynamic from 62.</summary>
    public Hpack Indexed(int index)
    {
        Integer(_b, index, 7, 0x80);
        return this;
    }

    /// <summary>A literal whose name is an index (static or dynamic).</summary>
    public Hpack Literal(int nameIndex, string value, HpackIndexing indexing = HpackIndexing.Without) =>
        Literal(nameIndex, Encoding.UTF8.GetBytes(value), indexing);

    public Hpack Literal(int nameIndex, ReadOnlySpan<byte> value, HpackIndexing indexing = HpackIndexing.Without)
    {
        Integer(_b, nameIndex, indexing == HpackIndexing.Incremental ? 6 : 4, (byte)indexing);
        String(_b, value);
        return this;
    }

    /// <summary>A literal with a new name.</summary>
    public Hpack Literal(string name, string value, HpackIndexing indexing = HpackIndexing.Without) =>
        Literal(Encoding.UTF8.GetBytes(name), Encoding.UTF8.GetBytes(value), indexing);

    public Hpack Literal(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value, HpackIndexing indexing = HpackIndexing.Without)
    {
        _b.Add((byte)indexing);
        String(_b, name);
        String(_b, value);
        return this;
    }

    /// <summary>A dynamic table size update (001xxxxx).</summary>
    public Hpack SizeUpdate(long size)
    {
        Integer(_b, size, 5, 0x20);
        return this;
    }

    public Hpack Raw(params byte[] bytes)
    {
        _b.AddRange(bytes);
        return this;
    }

    /// <summary>A field the cheap way without touching the dynamic table: a static entry when one
    /// matches, else a literal without indexing (with a static name when there is one).</summary>
    public Hpack Header(string name, string value)
    {
        var exact = Array.IndexOf(StaticTable, (name, value));
        if (exact >= 0) return Indexed(exact + 1);
        var named = Array.FindIndex(StaticTable, e => e.Name == name);
        return named >= 0 ? Literal(named + 1, value) : Literal(name, value);
    }

    public static Hpack Request(string method, string path, string authority = "example.com",
        IEnumerable<(string Name, string Value)>? headers = null, string scheme = "https")
    {
        var h = new Hpack().Header(":method", method).Header(":scheme", scheme).Header(":path", path);
        if (authority is not null) h.Header(":authority", authority);
        foreach (var (n, v) in headers ?? []) h.Header(n, v);
        return h;
    }

    public static Hpack Response(int status, IEnumerable<(string Name, string Value)>? headers = null)
    {
        var h = new Hpack().Header(":status", status.ToString(System.Globalization.CultureInfo.InvariantCulture));
        foreach (var (n, v) in headers ?? []) h.Header(n, v);
        return h;
    }

    /// <summary>RFC 7541 §5.1: an integer in a prefix of prefixBits bits of a byte whose other bits
    /// are flags.</summary>
    public static void Integer(List<byte> to, long value, int prefixBits, byte flags)
    {
        var max = (1 << prefixBits) - 1;
        if (value < max)
        {
            to.Add((byte)(flags | value));
            return;
        }
        to.Add((byte)(flags | max));
        value -= max;
        while (value >= 128)
        {
            to.Add((byte)(value % 128 + 128));
            value /= 128;
        }
        to.Add((byte)value);
    }

    /// <summary>RFC 7541 §5.2, without Huffman: H=0, length, octets.</summary>
    public static void String(List<byte> to, ReadOnlySpan<byte> s)
    {
        Integer(to, s.Length, 7, 0);
        foreach (var b in s) to.Add(b);
    }
}
