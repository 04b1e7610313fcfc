using System.Text;
using System.Text.Json;
using Collector.Connections;
using Collector.Events;
using Collector.Http;
using Collector.Metrics;
using Collector.Output;

namespace Collector.Fuzz;

/// <summary>The http1 and http2 targets: a ConnectionTable fed with the structs the kernel sends,
/// as the fuzz input, read as a script, says. Every exchange it emits is also written as an Akto
/// message (which decodes gzip / deflate / br bodies).
///
/// The script is a sequence of records, each an op byte and, for data and gaps, a length:
/// <code>
///   op      bit 0     side: 0 the client's bytes, 1 the server's
///           bits 1-2  connection slot 0..3 (one tgid, fd 3 + slot)
///           bits 3-5  kind: 0..3 data   [len u16 LE][len bytes: payload, cut short by the input's end]
///                           4    gap    [len u16 LE]: the kernel skipped len bytes (x 4096 with bit 6)
///                           5    close  the slot's connection closes (close event)
///                           6    open   a new connection in the slot (a new generation; no close
///                                       for the old one: the fd was reused); bit 6: it existed
///                                       before the collector (origin unknown); bit 7: the traced
///                                       process is the client (default: the server)
///                           7    ctl    bit 6 = 0: sweep (every connection idle); 1: process exit
///           bit 6     data: TLS plaintext (an OpenSSL probe) instead of syscall bytes
///           bit 7     data: the event starts up to len/2 bytes before the stream's end (overlap)
/// </code>
/// A slot opens by itself at its first use (traced server, accepted). Payloads above the kernel's
/// 16 KiB event size arrive as several events. For http2 each connection starts with the HTTP/2
/// client preface in the client's direction (the script holds what follows it).
///
/// Invariants (a broken one throws: a crash for afl): no exception; after every event the bytes
/// held in reassembly stay within the budget; every exchange's bodies within the limits and its
/// message valid JSON (headers strings too) of bounded size; a connection leaves the table only
/// counted as ended; at the end every connection has ended and the retained-bytes accounting
/// (table and gauge) is back to 0.</summary>
public sealed class ScriptTarget
{
    public const int MaxHeaderBytes = 4096;
    public const int MaxBodyBytes = 8192;
    public const int OutputBodyCap = 4096; // the output cuts harder than reassembly (Kafka limit)
    public const long Budget = 48 * 1024;
    public const int MaxConnections = 3;   // fewer than the slots: eviction is reachable
    public const int Slots = 4;
    public const uint Tgid = 100;

    public static readonly byte[] Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"u8.ToArray();

    private static readonly AktoIdentity Identity = new("1000000", "0", "00000000-0000-0000-0000-000000000001", ["authorization", "cookie"]);
    private static uint s_generation = 1;

    private readonly bool _http2;
    private readonly MessageBuffer _json = new(1 << 16);
    private CollectorMetrics _metrics = null!;
    private ConnectionTable _table = null!;
    private readonly Slot?[] _slots = new Slot?[Slots];
    private ulong _now;
    private long _made, _emitted; // connections the table made (tracked + counted as ended), exchanges

    private sealed class Slot(uint generation, bool tracedIsServer)
    {
        public readonly uint Generation = generation;
        public readonly bool TracedIsServer = tracedIsServer;
        public readonly ulong[] Positions = new ulong[4]; // [direction * 2 + tls]
        public bool Closed;
        public StreamDirection Side(int side) => (side == 0) == TracedIsServer ? StreamDirection.Ingress : StreamDirection.Egress;
    }

    public ScriptTarget(bool http2) => _http2 = http2;

    public void Run(ReadOnlySpan<byte> script)
    {
        _metrics = new CollectorMetrics();
        _table = new ConnectionTable(
            new ReassemblyLimits(TimeSpan.FromSeconds(30), MaxConnections, Budget, new HttpLimits(MaxHeaderBytes, MaxBodyBytes)),
            _metrics, OnExchange);
        Array.Clear(_slots);
        _now = 1_000_000_000;
        _made = _emitted = 0;
        try
        {
            Interpret(script);
        }
        catch
        {
            try { _table.Dispose(); } catch { } // the first exception is the finding
            throw;
        }
        _table.Dispose(); // every connection ends ("shutdown")
        Check(_table.Count == 0, $"{_table.Count} connections left after shutdown");
        Check(_table.RetainedBytes == 0, $"retained bytes {_table.RetainedBytes} after every connection ended");
        Check(Interlocked.Read(ref _metrics.BufferedBytes) == 0, $"BufferedBytes gauge {_metrics.BufferedBytes} after every connection ended");
        Check(_metrics.ExchangesEmitted.Total == _emitted, $"{_emitted} exchanges emitted, {_metrics.ExchangesEmitted.Total} counted");
    }

    /// <summary>What the last input did (replay with FUZZ_VERBOSE=1).</summary>
    public string Summary =>
        $"{_made} connections, {_emitted} exchanges, decoded {_metrics.BodiesDecoded.Value} (failed {_metrics.BodyDecodeFailures.Value}); drops: " +
        string.Join(", ", _metrics.HttpDrops.Series.Select(s => $"{s.Key}={s.Value.Value}"));

    private void Interpret(ReadOnlySpan<byte> s)
    {
        var at = 0;
        while (at < s.Length)
        {
            var op = s[at++];
            var side = op & 1;
            var slot = (op >> 1) & 3;
            var kind = (op >> 3) & 7;
            var bit6 = (op & 0x40) != 0;
            var bit7 = (op & 0x80) != 0;
            switch (kind)
            {
                case <= 3:
                {
                    var len = ReadLength(s, ref at);
                    len = Math.Min(len, s.Length - at);
                    var payload = s.Slice(at, len);
                    at += len;
                    Data(slot, side, payload, bit6, bit7);
                    break;
                }
                case 4:
                {
                    var n = (long)ReadLength(s, ref at) * (bit6 ? 4096 : 1);
                    var c = Use(slot);
                    c.Positions[Index(c.Side(side), bit7)] += (ulong)n; // bit 7: a gap in the TLS plaintext
                    break;
                }
                case 5:
                    if (_slots[slot] is { Closed: false } open) Close(open);
                    break;
                case 6:
                    Open(slot, tracedIsServer: !bit7, unknownOrigin: bit6);
                    break;
                default:
                    if (bit6) _table.OnExit(Tgid, _now += 1000);
                    else _table.Sweep(Environment.TickCount64 + 3_600_000);
                    foreach (var c in _slots) if (c is not null) c.Closed = true; // all ended; the next use opens anew
                    AfterEvent();
                    break;
            }
        }
    }

    private static int ReadLength(ReadOnlySpan<byte> s, ref int at)
    {
        var v = 0;
        if (at < s.Length) v = s[at++];
        if (at < s.Length) v |= s[at++] << 8;
        return v;
    }

    private static int Index(StreamDirection d, bool tls) => (int)d * 2 + (tls ? 1 : 0);

    private Slot Use(int slot) => _slots[slot] is { Closed: false } c ? c : Open(slot, tracedIsServer: true, unknownOrigin: false);

    private unsafe Slot Open(int slot, bool tracedIsServer, bool unknownOrigin)
    {
        var c = new Slot(++s_generation, tracedIsServer);
        _slots[slot] = c;
        var fd = (uint)(3 + slot);
        var e = new OpenEvent
        {
            Header = new EventHeader { TimestampNs = _now += 1000, Type = EventType.Open, Tgid = Tgid, Fd = fd, Generation = c.Generation },
            Family = 2,
            LocalPort = (ushort)(tracedIsServer ? 8080 : 40000 + slot),
            RemotePort = (ushort)(tracedIsServer ? 40000 + slot : 8080),
            Origin = unknownOrigin ? ConnectionOrigin.Unknown : tracedIsServer ? ConnectionOrigin.Accept : ConnectionOrigin.Connect,
        };
        e.LocalAddr[0] = 10; e.LocalAddr[3] = (byte)(tracedIsServer ? 1 : 2);
        e.RemoteAddr[0] = 10; e.RemoteAddr[3] = (byte)(tracedIsServer ? 2 : 1);
        "fuzzproc"u8.CopyTo(new Span<byte>(e.Comm, EventLayout.CommLength));
        _table.OnOpen(e);
        AfterEvent(opened: true); // generations only grow: every open makes a connection (and ends the fd's previous one)
        if (_http2) Send(c, slot, c.Side(0), Preface, tls: false, overlap: false);
        return c;
    }

    private void Close(Slot c)
    {
        var slot = Array.IndexOf(_slots, c);
        _table.OnClose(new CloseEvent
        {
            Header = new EventHeader { TimestampNs = _now += 1000, Type = EventType.Close, Tgid = Tgid, Fd = (uint)(3 + slot), Generation = c.Generation },
            EgressBytes = c.Positions[0] + c.Positions[1],
            IngressBytes = c.Positions[2] + c.Positions[3],
        });
        c.Closed = true;
        AfterEvent();
    }

    private void Data(int slot, int side, ReadOnlySpan<byte> payload, bool tls, bool overlap)
    {
        var c = Use(slot);
        var d = c.Side(side);
        do
        {
            var take = Math.Min(payload.Length, EventLayout.MaxDataSize);
            Send(c, slot, d, payload[..take], tls, overlap);
            payload = payload[take..];
        } while (payload.Length > 0);
    }

    private void Send(Slot c, int slot, StreamDirection d, ReadOnlySpan<byte> bytes, bool tls, bool overlap)
    {
        ref var pos = ref c.Positions[Index(d, tls)];
        var start = pos;
        if (overlap) start -= Math.Min(start, (ulong)bytes.Length / 2);
        var h = new DataEventHeader
        {
            Header = new EventHeader { TimestampNs = _now += 1000, Type = EventType.Data, Tgid = Tgid, Fd = (uint)(3 + slot), Generation = c.Generation },
            Position = start,
            CallBytes = (uint)bytes.Length,
            DataLength = (uint)bytes.Length,
            Direction = d,
            Source = tls ? EventSource.OpenSsl : EventSource.Syscall,
            TlsCtx = tls ? 0x7f00_1000UL : 0,
        };
        pos = Math.Max(pos, start + (ulong)bytes.Length);
        _table.OnData(h, bytes);
        AfterEvent();
    }

    private void AfterEvent(bool opened = false)
    {
        // a connection leaves the table only counted as ended (ConnectionsEnded); an event makes
        // at most one (an open always; data of a connection evicted earlier makes it anew)
        var made = _table.Count + _metrics.ConnectionsEnded.Total;
        Check(made - _made is 0 or 1 && (!opened || made - _made == 1),
            $"{made - _made} connections made by one {(opened ? "open" : "")} event (tracked {_table.Count}, ended {_metrics.ConnectionsEnded.Total})");
        _made = made;
        var r = _table.RetainedBytes;
        Check(r >= 0 && r <= Budget, $"retained bytes {r} outside [0, {Budget}] after an event");
        Check(Interlocked.Read(ref _metrics.BufferedBytes) == r, $"BufferedBytes gauge {_metrics.BufferedBytes} != table's {r}");
        Check(_table.Count <= MaxConnections, $"{_table.Count} connections tracked, limit {MaxConnections}");
    }

    private void OnExchange(HttpExchange x)
    {
        try
        {
            _emitted++;
            Check(x.Request.IsRequest && !x.Response.IsRequest, "exchange of a request and a response");
            Check(x.Request.BodyLength <= MaxBodyBytes && x.Response.BodyLength <= MaxBodyBytes,
                $"bodies {x.Request.BodyLength} / {x.Response.BodyLength} above HTTP_MAX_BODY_BYTES {MaxBodyBytes}");
            _json.ResetWrittenCount();
            AktoMessage.Write(_json, x, Identity, 1764000000, OutputBodyCap);
            Check(x.Request.BodyLength <= MaxBodyBytes && x.Response.BodyLength <= MaxBodyBytes,
                $"decoded bodies {x.Request.BodyLength} / {x.Response.BodyLength} above {MaxBodyBytes}");
            // every byte of a head or body becomes at most a 6-byte escape, twice escaped inside the headers strings
            var bound = 12 * (2 * MaxHeaderBytes + x.Request.HeaderCount * 8 + x.Response.HeaderCount * 8)
                + 8 * (2 * OutputBodyCap) + 4096;
            Check(_json.WrittenCount <= bound, $"Akto message of {_json.WrittenCount} bytes, bound {bound}");
            ValidateJson(_json.WrittenSpan);
            _ = AktoMessage.CollectionDetails(x, _json);
        }
        finally
        {
            x.Dispose();
        }
    }

    /// <summary>The message is one JSON object; its requestHeaders / responseHeaders strings hold JSON objects.</summary>
    private static void ValidateJson(ReadOnlySpan<byte> message)
    {
        var reader = new Utf8JsonReader(message, new JsonReaderOptions { MaxDepth = 4 });
        var headers = 0;
        while (reader.Read())
        {
            if (reader.TokenType != JsonTokenType.PropertyName || reader.CurrentDepth != 1) continue;
            var isHeaders = reader.ValueTextEquals("requestHeaders"u8) || reader.ValueTextEquals("responseHeaders"u8);
            reader.Read();
            if (!isHeaders) continue;
            Check(reader.TokenType == JsonTokenType.String, "headers field is not a string");
            var inner = Encoding.UTF8.GetBytes(reader.GetString()!);
            var r2 = new Utf8JsonReader(inner, new JsonReaderOptions { MaxDepth = 2 });
            Check(r2.Read() && r2.TokenType == JsonTokenType.StartObject, "headers string is not a JSON object");
            r2.Skip();
            Check(!r2.Read(), "headers string has something after its object");
            headers++;
        }
        Check(reader.BytesConsumed == message.Length && headers == 2, "message is not one JSON object with both headers fields");
    }

    private static void Check(bool ok, string what)
    {
        if (!ok) throw new InvariantBroken(what);
    }
}

/// <summary>An invariant of the collector that an input broke (a crash for afl).</summary>
public sealed class InvariantBroken(string message) : Exception(message);
