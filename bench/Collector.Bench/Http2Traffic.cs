using System.Buffers.Binary;
using System.Text;
using Collector.Connections;
using Collector.Events;
using Collector.Http2;

namespace Collector.Bench;

/// <summary>HTTP/2 and gRPC byte streams for the Driver: 8 streams per template, requests first
/// (HEADERS, and for gRPC a DATA message), then the responses' HEADERS, DATA (and gRPC trailers)
/// interleaved across streams, one event per frame batch the way an h2 server writes.
///
/// Each template is self-contained for HPACK: the first header block of each direction starts
/// with two dynamic table size updates (to 0, then back to 4096), which empties the table, and
/// the template's encoders start empty. Stream ids are written relative (1, 3, … 15) and the
/// Driver rewrites them in place before each event so that they keep increasing across the
/// templates of a connection (<see cref="ReplayTemplate.StreamIds"/>). The connection preface and
/// the SETTINGS exchange are <see cref="ConnectionStart"/>, played once when a connection opens.
///
/// Occasional noise by variant: PING and its ACK, a server SETTINGS and the client's ACK,
/// connection and stream WINDOW_UPDATEs.</summary>
public static class Http2Traffic
{
    public const int Streams = 8;
    private const string Authority = "api.example.internal:8080";

    /// <summary>GET on 8 streams, each answered with a <paramref name="bodySize"/> JSON body.</summary>
    public static ReplayTemplate Get(int bodySize, int variant, StreamDirection requestDirection)
    {
        var b = new Builder(requestDirection);
        var client = new List<Func<Frame>>[Streams];
        var server = new List<Func<Frame>>[Streams];
        var date = $"Tue, 25 Nov 2025 10:{variant % 60:00}:{variant * 7 % 60:00} GMT";
        for (var i = 0; i < Streams; i++)
        {
            var id = 2 * i + 1;
            var requestId = RequestId(variant, i);
            var path = $"/api/v1/items/{variant * Streams + i}?page=2&size=50";
            var body = Traffic.Text(bodySize, variant * Streams + i);
            client[i] = [() => b.Headers(client: true, id, endStream: true,
                (":method", "GET", Index), (":scheme", "https", Index), (":authority", Authority, Index), (":path", path, Index),
                ("user-agent", "bench/1.0", Index), ("accept", "application/json", Index),
                ("accept-encoding", "gzip, deflate, br", Index), ("x-request-id", requestId, Index))];
            server[i] =
            [
                () => b.Headers(client: false, id, endStream: false,
                    (":status", "200", Index), ("server", "nginx/1.22.1", Index), ("date", date, Index),
                    ("content-type", "application/json", Index), ("content-length", body.Length.ToString(), Index),
                    ("cache-control", "no-store", Index), ("x-request-id", requestId, Index)),
                .. DataFrames(id, body, split: i % 2 == 1),
            ];
        }
        // a client like h2load writes its requests back to back; the server answers as they come
        b.Rounds(client: true, client, startEvery: Streams);
        b.Rounds(client: false, server, startEvery: 2);
        b.Noise(variant);
        return b.Build(Streams, x => Check(x, bodySize, grpc: false));
    }

    /// <summary>Unary gRPC calls on 8 streams: a small request message, a <paramref name="responseSize"/>
    /// response message, grpc-status in trailers (a final HEADERS with END_STREAM).</summary>
    public static ReplayTemplate GrpcUnary(int responseSize, int variant, StreamDirection requestDirection)
    {
        var b = new Builder(requestDirection);
        var client = new List<Func<Frame>>[Streams];
        var server = new List<Func<Frame>>[Streams];
        for (var i = 0; i < Streams; i++)
        {
            var id = 2 * i + 1;
            var requestId = RequestId(variant, i);
            var request = GrpcMessage(Encoding.ASCII.GetBytes($"{{\"id\":{variant * Streams + i},\"fields\":[\"name\",\"price\",\"stock\"]}}"));
            var response = GrpcMessage(Traffic.Text(responseSize, variant * Streams + i));
            client[i] =
            [
                () => b.Headers(client: true, id, endStream: false,
                    (":method", "POST", Index), (":scheme", "https", Index), (":path", "/bench.v1.ItemService/GetItem", Index),
                    (":authority", Authority, Index), ("content-type", "application/grpc", Index), ("te", "trailers", Index),
                    ("user-agent", "grpc-go/1.60.1", Index), ("grpc-accept-encoding", "gzip", Index),
                    ("grpc-timeout", $"{4_999_000 + variant * 13 + i}u", NoIndex),
                    ("authorization", "Bearer 6f1c2b7e9a0d4c3f8e5b", NeverIndex), ("x-request-id", requestId, Index)),
                .. DataFrames(id, request, split: false),
            ];
            server[i] = [];
            if (variant % 2 == 1) server[i].Add(() => Frame.WindowUpdate(id, request.Length)); // grpc-go acknowledges stream data
            server[i].Add(() => b.Headers(client: false, id, endStream: false,
                (":status", "200", Index), ("content-type", "application/grpc", Index), ("grpc-accept-encoding", "gzip", Index),
                ("x-request-id", requestId, Index)));
            server[i].AddRange(DataFrames(id, response, split: false, endStream: false));
            server[i].Add(() => b.Headers(client: false, id, endStream: true, ("grpc-status", "0", Index), ("grpc-message", "", Index)));
        }
        b.Rounds(client: true, client, startEvery: 4);
        b.Rounds(client: false, server, startEvery: 2);
        b.Noise(variant);
        return b.Build(Streams, x => Check(x, responseSize + 5, grpc: true));
    }

    /// <summary>What begins every connection (RFC 9113 §3.4): the client's preface and SETTINGS
    /// (and a connection WINDOW_UPDATE, as browsers send), the server's SETTINGS and its ACK of the
    /// client's, then the client's ACK.</summary>
    public static SyntheticEvent[] ConnectionStart(StreamDirection requestDirection)
    {
        var server = Traffic.Opposite(requestDirection);
        var clientFirst = Http2Frame.Preface.ToArray()
            .Concat(Frame.Settings((1, 65536), (2, 0), (4, 6_291_456), (6, 262_144)).Bytes)
            .Concat(Frame.WindowUpdate(0, 15_663_105).Bytes).ToArray();
        var serverFirst = Frame.Settings((3, 128), (4, 65_536), (5, 16_384)).Bytes
            .Concat(Frame.WindowUpdate(0, 2_147_418_112).Bytes).Concat(Frame.SettingsAck().Bytes).ToArray();
        return [new(requestDirection, clientFirst), new(server, serverFirst), new(requestDirection, Frame.SettingsAck().Bytes)];
    }

    /// <summary>Checks an exchange a template made (verification runs): null when it is as sent.</summary>
    public static string? Check(HttpExchange x, int responseBody, bool grpc)
    {
        var q = x.Request;
        var r = x.Response;
        if (q.Version != Http2Session.Version) return $"version {q.Version}";
        if (q.Method != (grpc ? "POST" : "GET")) return $"method {q.Method}";
        if (!q.Target.StartsWith(grpc ? "/bench.v1.ItemService/GetItem" : "/api/v1/items/")) return $"path {q.Target}";
        if (q.Header("host") != Authority) return $"host {q.Header("host")}";
        if (q.Header("x-request-id") is not { Length: 36 } rid) return "x-request-id missing";
        if (r.Header("x-request-id") != rid) return "response x-request-id differs from the request's";
        if (r.StatusCode != 200) return $"status {r.StatusCode}";
        if (r.BodyLength != responseBody || r.BodyHasGap || r.Incomplete || r.BodyTruncated) return $"response body {r.BodyLength} bytes (expected {responseBody})";
        if (grpc)
        {
            if (r.Header("grpc-status") != "0") return "grpc-status trailer missing";
            if (q.Header("authorization") is null) return "never-indexed authorization missing";
        }
        else if (r.Header("content-length") != responseBody.ToString()) return "content-length";
        return null;
    }

    private static string RequestId(int variant, int stream) => $"5f0c4a8e-{variant:x4}-4b1e-9f0d-{stream * 7919 + variant:x12}";

    private static byte[] GrpcMessage(byte[] message)
    {
        var m = new byte[5 + message.Length];
        BinaryPrimitives.WriteUInt32BigEndian(m.AsSpan(1), (uint)message.Length);
        message.CopyTo(m, 5);
        return m;
    }

    /// <summary>A body as DATA frames of at most 16 KiB (split: in two, as a server flushing part
    /// of it first), END_STREAM on the last.</summary>
    private static List<Func<Frame>> DataFrames(int id, byte[] body, bool split, bool endStream = true)
    {
        var pieces = new List<(int Offset, int Length)>();
        var size = split && body.Length > 1 ? (body.Length + 1) / 2 : Http2Frame.DefaultMaxFrameSize;
        for (var off = 0; off < body.Length; off += size) pieces.Add((off, Math.Min(size, body.Length - off)));
        var frames = new List<Func<Frame>>();
        for (var k = 0; k < pieces.Count; k++)
        {
            var (off, len) = pieces[k];
            var last = k == pieces.Count - 1;
            frames.Add(() => Frame.Make(Http2Frame.Data, last && endStream ? Http2Frame.FlagEndStream : (byte)0, id, body.AsSpan(off, len)));
        }
        return frames;
    }

    private const HpackEncoder.Mode Index = HpackEncoder.Mode.Index, NoIndex = HpackEncoder.Mode.NoIndex, NeverIndex = HpackEncoder.Mode.NeverIndex;

    /// <summary>One frame's bytes; StreamId (relative) is where the Driver rewrites it.</summary>
    private readonly record struct Frame(byte[] Bytes, int StreamId)
    {
        public static Frame Make(byte type, byte flags, int streamId, ReadOnlySpan<byte> payload)
        {
            var b = new byte[Http2Frame.HeaderSize + payload.Length];
            b[0] = (byte)(payload.Length >> 16);
            b[1] = (byte)(payload.Length >> 8);
            b[2] = (byte)payload.Length;
            b[3] = type;
            b[4] = flags;
            BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(5), (uint)streamId);
            payload.CopyTo(b.AsSpan(Http2Frame.HeaderSize));
            return new(b, streamId);
        }

        public static Frame Settings(params (ushort Id, uint Value)[] settings)
        {
            var p = new byte[6 * settings.Length];
            for (var i = 0; i < settings.Length; i++)
            {
                BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(6 * i), settings[i].Id);
                BinaryPrimitives.WriteUInt32BigEndian(p.AsSpan(6 * i + 2), settings[i].Value);
            }
            return Make(Http2Frame.Settings, 0, 0, p);
        }

        public static Frame SettingsAck() => Make(Http2Frame.Settings, Http2Frame.FlagAck, 0, []);

        public static Frame WindowUpdate(int streamId, int increment)
        {
            var p = new byte[4];
            BinaryPrimitives.WriteUInt32BigEndian(p, (uint)increment);
            return Make(Http2Frame.WindowUpdate, 0, streamId, p);
        }

        public static Frame Ping(bool ack, ulong opaque)
        {
            var p = new byte[8];
            BinaryPrimitives.WriteUInt64BigEndian(p, opaque);
            return Make(Http2Frame.Ping, ack ? Http2Frame.FlagAck : (byte)0, 0, p);
        }
    }

    /// <summary>Lays a template's frames out in events, in wire order (HPACK state follows it).</summary>
    private sealed class Builder(StreamDirection requestDirection)
    {
        private readonly StreamDirection _client = requestDirection, _server = Traffic.Opposite(requestDirection);
        private readonly HpackEncoder _clientHpack = new(), _serverHpack = new();
        private readonly List<(bool Client, List<Frame> Frames)> _writes = new();

        public Frame Headers(bool client, int id, bool endStream, params (string Name, string Value, HpackEncoder.Mode Mode)[] fields)
        {
            var block = (client ? _clientHpack : _serverHpack).Block(fields);
            return Frame.Make(Http2Frame.Headers, (byte)(Http2Frame.FlagEndHeaders | (endStream ? Http2Frame.FlagEndStream : 0)), id, block);
        }

        /// <summary>One write per round: stream i joins at round i / startEvery and sends its next
        /// frame in each round after.</summary>
        public void Rounds(bool client, List<Func<Frame>>[] streams, int startEvery)
        {
            for (var round = 0; ; round++)
            {
                var write = new List<Frame>();
                var pending = false;
                for (var i = 0; i < streams.Length; i++)
                {
                    var k = round - i / startEvery;
                    if (k < 0) { pending = true; continue; }
                    if (k < streams[i].Count) write.Add(streams[i][k]());
                    if (k + 1 < streams[i].Count) pending = true;
                }
                if (write.Count > 0) _writes.Add((client, write));
                if (!pending) break;
            }
        }

        public void Noise(int variant)
        {
            var firstClient = _writes.FindIndex(w => w.Client);
            var firstServer = _writes.FindIndex(w => !w.Client);
            var tail = new List<Frame>();
            if (variant % 4 == 1)
            {
                // a keep-alive PING from the client, acknowledged in the server's next write
                _writes[firstClient].Frames.Insert(0, Frame.Ping(ack: false, (ulong)variant));
                _writes[firstServer].Frames.Insert(0, Frame.Ping(ack: true, (ulong)variant));
            }
            if (variant % 8 == 2)
            {
                // the server changes a setting mid-connection; the client acknowledges
                _writes[firstServer].Frames.Insert(0, Frame.Settings((3, 100), (4, 131_072)));
                tail.Add(Frame.SettingsAck());
            }
            var serverData = _writes.Where(w => !w.Client).SelectMany(w => w.Frames)
                .Where(f => f.Bytes[3] == Http2Frame.Data).Sum(f => f.Bytes.Length - Http2Frame.HeaderSize);
            if (variant % 2 == 0) tail.Add(Frame.WindowUpdate(0, serverData)); // the client returns connection window
            if (variant % 4 == 0) tail.Add(Frame.WindowUpdate(1, 65_536));      // and stream window, after the stream ended
            if (tail.Count > 0) _writes.Add((true, tail));
        }

        public ReplayTemplate Build(int exchanges, Func<HttpExchange, string?> check)
        {
            var events = new SyntheticEvent[_writes.Count];
            var ids = new int[]?[_writes.Count];
            for (var w = 0; w < _writes.Count; w++)
            {
                var (client, frames) = _writes[w];
                var bytes = new byte[frames.Sum(f => f.Bytes.Length)];
                var patches = new List<int>();
                var at = 0;
                foreach (var f in frames)
                {
                    f.Bytes.CopyTo(bytes, at);
                    if (f.StreamId != 0) patches.AddRange([at + 5, f.StreamId]);
                    at += f.Bytes.Length;
                }
                events[w] = new(client ? _client : _server, bytes);
                ids[w] = patches.Count > 0 ? patches.ToArray() : null;
            }
            return new ReplayTemplate
            {
                Events = events,
                StreamIds = ids,
                StreamIdStride = 2 * Streams,
                ConnectionStart = ConnectionStart(_client),
                Exchanges = exchanges,
                Check = check,
            };
        }
    }
}

/// <summary>A small HPACK encoder (RFC 7541) for the bench: static and dynamic table matches,
/// literals with incremental indexing (name from either table when known), without indexing and
/// never indexed, Huffman strings when shorter. Each template's first block begins with size
/// updates to 0 and back to 4096, so a template never refers to another's entries.</summary>
internal sealed class HpackEncoder
{
    public enum Mode { Index, NoIndex, NeverIndex }

    private const int MaxSize = 4096;
    private static readonly Dictionary<(string, string), int> StaticFull = new();
    private static readonly Dictionary<string, int> StaticName = new();

    static HpackEncoder()
    {
        for (var i = HpackStaticTable.Count; i >= 1; i--)
        {
            // from the end: the lowest index of a name or pair stays
            var name = Encoding.ASCII.GetString(HpackStaticTable.Name(i));
            StaticName[name] = i;
            StaticFull[(name, Encoding.ASCII.GetString(HpackStaticTable.Value(i)))] = i;
        }
    }

    private readonly List<(string Name, string Value)> _table = new(); // newest first: dynamic index 1
    private int _size;
    private bool _started;

    public byte[] Block(IEnumerable<(string Name, string Value, Mode Mode)> fields)
    {
        var o = new List<byte>(256);
        if (!_started)
        {
            _started = true;
            Integer(o, 0x20, 5, 0);       // empties the table…
            Integer(o, 0x20, 5, MaxSize); // …and gives it back its size
            _table.Clear();
            _size = 0;
        }
        foreach (var (name, value, mode) in fields) Field(o, name, value, mode);
        return o.ToArray();
    }

    private void Field(List<byte> o, string name, string value, Mode mode)
    {
        if (mode == Mode.Index)
        {
            if (StaticFull.TryGetValue((name, value), out var s)) { Integer(o, 0x80, 7, s); return; }
            var d = _table.FindIndex(e => e.Name == name && e.Value == value);
            if (d >= 0) { Integer(o, 0x80, 7, HpackStaticTable.Count + 1 + d); return; }
        }
        var nameIndex = StaticName.TryGetValue(name, out var sn) ? sn
            : _table.FindIndex(e => e.Name == name) is var dn and >= 0 ? HpackStaticTable.Count + 1 + dn : 0;
        switch (mode)
        {
            case Mode.Index: Integer(o, 0x40, 6, nameIndex); break;
            case Mode.NoIndex: Integer(o, 0x00, 4, nameIndex); break;
            default: Integer(o, 0x10, 4, nameIndex); break;
        }
        if (nameIndex == 0) String(o, name);
        String(o, value);
        if (mode == Mode.Index) Insert(name, value);
    }

    private void Insert(string name, string value)
    {
        var size = name.Length + value.Length + 32;
        while (_table.Count > 0 && _size + size > MaxSize)
        {
            var old = _table[^1];
            _size -= old.Name.Length + old.Value.Length + 32;
            _table.RemoveAt(_table.Count - 1);
        }
        if (size > MaxSize) return;
        _table.Insert(0, (name, value));
        _size += size;
    }

    private static void Integer(List<byte> o, int flags, int prefixBits, int value)
    {
        var max = (1 << prefixBits) - 1;
        if (value < max)
        {
            o.Add((byte)(flags | value));
            return;
        }
        o.Add((byte)(flags | max));
        value -= max;
        while (value >= 128)
        {
            o.Add((byte)(value % 128 + 128));
            value /= 128;
        }
        o.Add((byte)value);
    }

    /// <summary>The Huffman code of <paramref name="raw"/> (the micro benchmark's input).</summary>
    public static byte[] HuffmanBytes(byte[] raw)
    {
        var o = new List<byte>();
        ulong acc = 0;
        var n = 0;
        foreach (var c in raw)
        {
            var len = Huffman.Length(c);
            acc = (acc << len) | Huffman.Code(c);
            n += len;
            while (n >= 8)
            {
                n -= 8;
                o.Add((byte)(acc >> n));
            }
        }
        if (n > 0) o.Add((byte)((acc << (8 - n)) | (0xffu >> n)));
        return o.ToArray();
    }

    private static void String(List<byte> o, string s)
    {
        var raw = Encoding.ASCII.GetBytes(s);
        long bits = 0;
        foreach (var c in raw) bits += Huffman.Length(c);
        var huffmanLength = (int)((bits + 7) / 8);
        if (huffmanLength >= raw.Length)
        {
            Integer(o, 0, 7, raw.Length);
            o.AddRange(raw);
            return;
        }
        Integer(o, 0x80, 7, huffmanLength);
        o.AddRange(HuffmanBytes(raw)); // padded with the EOS prefix (ones)
    }
}
