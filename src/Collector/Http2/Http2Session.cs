using System.Buffers.Binary;
using Collector.Connections;
using Collector.Events;
using Collector.Http;

namespace Collector.Http2;

/// <summary>How an HTTP/2 session began.</summary>
internal enum Http2Start
{
    Preface,     // the client's preface is the first byte seen (prior knowledge, TLS with ALPN h2)
    ServerFirst, // the server's SETTINGS came first; the client's preface follows
    Upgrade,     // h2c: an HTTP/1.1 request with Upgrade: h2c answered 101; it is stream 1
    Joined,      // the connection was already running: frames from here on, history unknown
}

/// <summary>HTTP/2 on a connection (RFC 9113): each direction's frames, its HPACK state and the
/// table of streams, one exchange per stream.
///
/// Frames are read in place from each event: DATA payloads go straight into their stream's body
/// (or its gRPC message reader), header block fragments into one bounded buffer per direction
/// until END_HEADERS, control frames into a few bytes. Holes are followed by position: one inside
/// a frame's payload marks what it hit (a body gap, a header block lost, which leaves the HPACK
/// table unknown); one across a frame boundary loses the framing until an event begins with
/// plausible frames again.
///
/// Streams are emitted when both sides have ended; RST_STREAM and GOAWAY end them with a counted
/// reason; 1xx headers are skipped; a server push is an exchange of its own (the PUSH_PROMISE's
/// header block is its request). A connection joined mid-stream never gives up: the HPACK decoder
/// resolves what it can (static table, literals, entries inserted since), and a stream whose
/// :method and :path (or :status) cannot be decoded is counted, not guessed.
///
/// gRPC streams (request content-type application/grpc…) give one exchange per request/response
/// message pair in order (see GrpcPairs).</summary>
internal sealed class Http2Session : IProtocolSession
{
    public const string Version = "HTTP/2";
    private const int MaxStreams = 1024;          // streams tracked at once (a peer's concurrency is far lower)
    private const int MaxHeldGrpcMessages = 256;  // per stream, waiting for the other side's message
    private static ReadOnlySpan<byte> GrpcIndexHeader => "x-collector-grpc-index"u8;

    private readonly ISessionHost _host;
    private readonly HttpLimits _limits;
    private readonly Direction _egress, _ingress;
    private readonly StreamTable _streams = new();
    private StreamDirection? _clientDirection;
    // per initiator (client streams are odd, pushed ones even: their ids grow apart)
    private readonly uint[] _highestStream = new uint[2]; // streams at or below it that are not in the table have ended
    private readonly uint[] _firstOpened = new uint[2];   // the first stream whose request headers this session read
    private readonly bool _joined;
    private bool _confirmed; // a header block named a stream: this is HTTP/2, not bytes that looked like it

    public Http2Session(ISessionHost host, StreamDirection? clientDirection, Http2Start start, HttpMessage? upgradeRequest = null, int prefaceRead = 0)
    {
        _host = host;
        _limits = host.Limits;
        _joined = start == Http2Start.Joined;
        _confirmed = !_joined;
        var tableCap = 64 * 1024;
        _egress = new Direction(StreamDirection.Egress, tableCap, _limits.MaxHeaderBytes, _joined);
        _ingress = new Direction(StreamDirection.Ingress, tableCap, _limits.MaxHeaderBytes, _joined);
        _clientDirection = clientDirection;
        if (clientDirection is { } c && start != Http2Start.Joined) Of(c).PrefaceLeft = Http2Frame.Preface.Length - prefaceRead;
        if (upgradeRequest is not null)
        {
            // RFC 9113 §3.3 (RFC 7540 §3.2): the upgraded request is stream 1, half-closed by the client
            var s = Stream.Rent(1);
            s.Request = upgradeRequest;
            s.RequestEnded = true;
            _highestStream[1] = _firstOpened[1] = 1;
            NoteGrpc(s);
            _streams.Add(s);
        }
    }

    private Direction Of(StreamDirection d) => d == StreamDirection.Egress ? _egress : _ingress;
    private bool IsClient(Direction d) => _clientDirection == d.Dir;
    /// <summary>1: the traced process is the server (requests arrive); 2: it is the client.</summary>
    private int ExchangeDirection => _clientDirection == StreamDirection.Ingress ? 1 : 2;

    public bool HasMessagesInProgress => _streams.Count > 0;

    // What the streams hold is summed as it changes rather than over every stream at each event:
    // a stream whose messages may have changed is touched, and the next read of Retained
    // re-measures only the touched ones (a stream leaving the table takes its share with it).
    // A touch names the parts that changed (a side's message, a side's gRPC reader): most events
    // change one, and re-measuring the others would read their objects, by then cold lines (a
    // request waits through the events that bring its response; a gRPC message's DATA goes to
    // its reader, not to the message whose headers came in an earlier event).
    private long _streamsRetained;
    private readonly List<Stream> _touched = new();
    private bool _recountAll;

    /// <summary>Tests: every read of Retained also recounts every stream and throws when the running
    /// sum disagrees (a mutation that forgot to touch its stream).</summary>
    internal static bool CheckRetainedAccounting;

    public long Retained
    {
        get
        {
            if (_recountAll)
            {
                _recountAll = false;
                _streamsRetained = 0;
                foreach (var s in _streams)
                {
                    s.ClearShares();
                    Remeasure(s, AllParts);
                }
                foreach (var s in _touched)
                {
                    s.Touched = false;
                    s.TouchedParts = 0;
                }
            }
            else
            {
                foreach (var s in _touched)
                {
                    if (!s.Touched) continue; // left the table since (or listed twice)
                    s.Touched = false;
                    var parts = s.TouchedParts;
                    s.TouchedParts = 0;
                    Remeasure(s, parts);
                }
            }
            _touched.Clear();
            if (CheckRetainedAccounting)
            {
                long all = 0;
                foreach (var s in _streams)
                {
                    all += s.Retained;
                    foreach (var m in (ReadOnlySpan<HttpMessage?>)[s.Request, s.Response])
                        if (m is not null && m.RetainedBytes != m.RecountRetainedBytes())
                            throw new InvalidOperationException($"message retained bytes: kept {m.RetainedBytes}, buffers hold {m.RecountRetainedBytes()}");
                    foreach (var reader in (ReadOnlySpan<GrpcMessageReader?>)[s.GrpcRequests, s.GrpcResponses])
                        if (reader is not null && reader.Retained != reader.RecountRetained())
                            throw new InvalidOperationException($"gRPC reader retained bytes: running sum {reader.Retained}, buffers hold {reader.RecountRetained()}");
                }
                if (all != _streamsRetained)
                    throw new InvalidOperationException($"HTTP/2 retained bytes: running sum {_streamsRetained}, streams hold {all}");
            }
            return _egress.Retained + _ingress.Retained + _streamsRetained;
        }
    }

    /// <summary>These parts of the stream measured again, the running sum moved by the change.</summary>
    private void Remeasure(Stream s, byte parts)
    {
        if ((parts & RequestMessage) != 0) Remeasure(ref s.RequestMessageShare, s.Request?.RetainedBytes ?? 0);
        if ((parts & RequestReader) != 0) Remeasure(ref s.RequestReaderShare, s.GrpcRequests?.Retained ?? 0);
        if ((parts & ResponseMessage) != 0) Remeasure(ref s.ResponseMessageShare, s.Response?.RetainedBytes ?? 0);
        if ((parts & ResponseReader) != 0) Remeasure(ref s.ResponseReaderShare, s.GrpcResponses?.Retained ?? 0);
    }

    private void Remeasure(ref int share, int now)
    {
        _streamsRetained += now - share;
        share = now;
    }

    // the parts of a stream that hold buffers
    private const byte RequestMessage = 1, RequestReader = 2, ResponseMessage = 4, ResponseReader = 8, AllParts = 15;

    /// <summary>These parts of the stream may have changed size.</summary>
    private void Touch(Stream s, byte parts)
    {
        s.TouchedParts |= parts;
        if (s.Touched) return;
        s.Touched = true;
        _touched.Add(s);
    }

    /// <summary>The message one direction's frames write: the request when it is the client's.</summary>
    private static byte MessageOf(bool client) => client ? RequestMessage : ResponseMessage;

    /// <summary>The gRPC reader one direction's DATA feeds.</summary>
    private static byte ReaderOf(bool client) => client ? RequestReader : ResponseReader;

    /// <summary>The stream leaves the table, taking its share of the running sum with it.</summary>
    private void Detach(Stream s)
    {
        _streams.Remove(s);
        _streamsRetained -= s.Accounted;
    }

    /// <summary>The stream leaves the table and goes back to the pool.</summary>
    private void RemoveAndRecycle(Stream s)
    {
        Detach(s);
        s.Recycle();
    }

    // ---- bytes in ----

    public void OnData(StreamDirection direction, ReadOnlySpan<byte> data, ulong eventNs)
    {
        var d = Of(direction);
        _eventNs = eventNs;
        if (d.PrefaceLeft > 0)
        {
            var expected = Http2Frame.Preface[^d.PrefaceLeft..];
            var n = Math.Min(expected.Length, data.Length);
            if (!data[..n].SequenceEqual(expected[..n]))
            {
                d.PrefaceLeft = 0;
                var toHttp1 = _joined && !_confirmed;
                LoseSync(d, "bad_preface");
                if (toHttp1) return;
                // The preface's bytes went by unseen (Go's first TLS read can be served from what
                // the handshake buffered, with no syscall inside to tie it to its socket): the
                // frames that follow are taken where they begin, as after any other hole, instead
                // of the connection's whole event being skipped.
            }
            else
            {
                d.PrefaceLeft -= n;
                data = data[n..];
            }
        }
        if (d.Resync)
        {
            // the only place framing can be found again: an event that begins with frames
            if (!Http2FrameHeader.StartsWithFrames(data, Math.Min(d.MaxFrameSize, 1 << 20)))
            {
                _host.Metrics.ResyncSkippedBytes.Add(data.Length);
                return;
            }
            d.Resync = false;
        }
        while (!data.IsEmpty)
        {
            if (d.Resync)
            {
                _host.Metrics.ResyncSkippedBytes.Add(data.Length); // the rest of an event where framing was lost
                return;
            }
            if (!d.InFrame)
            {
                Http2FrameHeader header;
                if (d.HeadLength == 0 && data.Length >= Http2Frame.HeaderSize)
                {
                    // the whole frame header is in the event (the usual case): read where it lies
                    header = Http2FrameHeader.Read(data);
                    data = data[Http2Frame.HeaderSize..];
                }
                else
                {
                    var take = Math.Min(Http2Frame.HeaderSize - d.HeadLength, data.Length);
                    data[..take].CopyTo(d.Head.AsSpan(d.HeadLength));
                    d.HeadLength += take;
                    data = data[take..];
                    if (d.HeadLength < Http2Frame.HeaderSize) return;
                    d.HeadLength = 0;
                    header = Http2FrameHeader.Read(d.Head);
                }
                if (!StartFrame(d, header)) return;
                if (d.Frame.Length == 0)
                {
                    EndFrame(d);
                    continue;
                }
                if (WholeHeaderBlockFrame(d, data))
                {
                    data = data[d.Frame.Length..];
                    continue;
                }
            }
            var chunk = Math.Min(d.Frame.Length - d.FramePos, data.Length);
            Payload(d, data[..chunk]);
            data = data[chunk..];
            if (d.InFrame && d.FramePos == d.Frame.Length) EndFrame(d);
        }
    }

    private ulong _eventNs;

    /// <summary>Checks a frame header and sets up reading its payload. False: framing is lost.</summary>
    private bool StartFrame(Direction d, Http2FrameHeader h)
    {
        if (h.Violation(d.MaxFrameSize) is { } violation)
        {
            LoseSync(d, violation);
            return false;
        }
        if (d.ExpectContinuation && (h.Type != Http2Frame.Continuation || h.StreamId != d.BlockStream))
        {
            LoseSync(d, "continuation_expected");
            return false;
        }
        if (h.Type == Http2Frame.Continuation && !d.ExpectContinuation)
        {
            if (!_joined || d.SawHeaderBlock)
            {
                LoseSync(d, "continuation_without_headers");
                return false;
            }
            // joined inside a header block: the rest of it is read past, its stream unnamed
            d.BlockStream = h.StreamId;
            d.BlockIsPush = d.BlockEndStream = false;
            d.BlockLength = 0;
            d.BlockTooLarge = false;
            d.BlockLost = true;
            d.ExpectContinuation = true;
        }
        if (h.Type is Http2Frame.Headers or Http2Frame.PushPromise) d.SawHeaderBlock = true;
        d.Frame = h;
        d.InFrame = true;
        d.FramePos = 0;
        d.PadLength = 0;
        d.ControlLength = 0;
        d.ControlLost = false;
        var padded = (h.Type is Http2Frame.Data or Http2Frame.Headers or Http2Frame.PushPromise) && h.Has(Http2Frame.FlagPadded);
        d.PrefixLength = (padded ? 1 : 0)
            + (h.Type == Http2Frame.Headers && h.Has(Http2Frame.FlagPriority) ? 5 : 0)
            + (h.Type == Http2Frame.PushPromise ? 4 : 0);
        if (h.Length < d.PrefixLength)
        {
            d.InFrame = false;
            LoseSync(d, "bad_frame_length");
            return false;
        }
        if (h.Type == Http2Frame.Data)
        {
            if (DataStream(d) is { } ds) (IsClient(d) ? ds.GrpcRequests : ds.GrpcResponses)?.FrameStart();
            else if (OpenedUnseen(h.StreamId)) Unnamed(null, h.StreamId, "headers_not_seen"); // its HEADERS went by unseen (even if this DATA is empty)
        }
        if (h.Type is Http2Frame.Headers or Http2Frame.PushPromise)
        {
            d.BlockStream = h.StreamId;
            d.BlockIsPush = h.Type == Http2Frame.PushPromise;
            d.BlockEndStream = h.Type == Http2Frame.Headers && h.Has(Http2Frame.FlagEndStream);
            d.BlockLength = 0;
            d.BlockTooLarge = d.BlockLost = false;
            d.BlockNs = _eventNs;
        }
        return true;
    }

    /// <summary>A HEADERS frame that carries a whole header block (END_HEADERS, no padding, no
    /// CONTINUATION pending) and lies whole in the event, just started: its block is decoded where
    /// it lies instead of being copied into the direction's block buffer first. False: the frame is
    /// read piece by piece as any other.</summary>
    private bool WholeHeaderBlockFrame(Direction d, ReadOnlySpan<byte> data)
    {
        var h = d.Frame;
        if (h.Type != Http2Frame.Headers || !h.Has(Http2Frame.FlagEndHeaders) || h.Has(Http2Frame.FlagPadded) ||
            data.Length < h.Length || d.BlockLength != 0)
            return false;
        var block = data[d.PrefixLength..h.Length]; // after the priority fields, if any
        if (block.Length > _limits.MaxHeaderBytes) return false; // counted and dropped by the usual path
        d.FramePos = h.Length;
        d.InFrame = false;
        HeaderBlock(d, block);
        return true;
    }

    /// <summary>Part of the current frame's payload.</summary>
    private void Payload(Direction d, ReadOnlySpan<byte> chunk)
    {
        while (!chunk.IsEmpty)
        {
            if (d.FramePos < d.PrefixLength)
            {
                var b = chunk[0];
                d.Control[d.ControlLength++] = b;
                d.FramePos++;
                chunk = chunk[1..];
                if (d.FramePos == 1 && d.Frame.Has(Http2Frame.FlagPadded) && d.Frame.Type is Http2Frame.Data or Http2Frame.Headers or Http2Frame.PushPromise)
                {
                    d.PadLength = b;
                    if (d.PadLength > d.Frame.Length - d.PrefixLength)
                    {
                        LoseSync(d, "padding_too_long");
                        return;
                    }
                }
                continue;
            }
            var contentEnd = d.Frame.Length - d.PadLength;
            if (d.FramePos < contentEnd)
            {
                var n = Math.Min(chunk.Length, contentEnd - d.FramePos);
                Content(d, chunk[..n]);
                d.FramePos += n;
                chunk = chunk[n..];
                continue;
            }
            var pad = Math.Min(chunk.Length, d.Frame.Length - d.FramePos); // padding: skipped
            d.FramePos += pad;
            chunk = chunk[pad..];
        }
    }

    private void Content(Direction d, ReadOnlySpan<byte> content)
    {
        switch (d.Frame.Type)
        {
            case Http2Frame.Data:
                if (DataStream(d) is { } s) BodyBytes(s, d, content);
                break;
            case Http2Frame.Headers or Http2Frame.PushPromise or Http2Frame.Continuation:
                if (!d.AppendBlock(content, _limits.MaxHeaderBytes)) _host.CountDrop("h2_header_block_too_large");
                break;
            default:
            {
                // control payloads: the few bytes that matter are kept; the rest (GOAWAY debug data,
                // SETTINGS beyond what we read) is not needed
                var n = Math.Min(content.Length, d.Control.Length - d.ControlLength);
                content[..n].CopyTo(d.Control.AsSpan(d.ControlLength));
                d.ControlLength += n;
                break;
            }
        }
    }

    /// <summary>The stream of the DATA frame being read: a frame's payload comes in many pieces,
    /// and the direction's remembered stream (Find) spares the table lookup for all but the first.</summary>
    private Stream? DataStream(Direction d) => Find(d, d.Frame.StreamId);

    /// <summary>The stream with this id, if it is in the table. Each direction remembers the last
    /// stream it found or opened (a stream's frames mostly follow each other on its side: HEADERS
    /// then DATA, DATA then trailers), which spares a table lookup, a few cache misses on a busy
    /// node; a remembered stream that has gone back to the pool since is known by its Use.</summary>
    private Stream? Find(Direction d, uint id)
    {
        if (d.LastStream is { } last && last.Id == id && last.Use == d.LastStreamUse) return last;
        if (!_streams.TryGetValue(id, out var s)) return null;
        Remember(d, s);
        return s;
    }

    private static void Remember(Direction d, Stream s)
    {
        d.LastStream = s;
        d.LastStreamUse = s.Use;
    }

    private void BodyBytes(Stream s, Direction d, ReadOnlySpan<byte> content)
    {
        if (s.Unnamed) return;
        var client = IsClient(d);
        if (!client && s.Response is null) return; // DATA before the response's HEADERS: the stream's loss is counted at its end
        if (s.Grpc)
        {
            Touch(s, ReaderOf(client));
            var reader = client ? s.GrpcRequests! : (s.GrpcResponses ??= new GrpcMessageReader());
            var before = reader.Count;
            reader.Feed(content, _limits.MaxBodyBytes, client ? s.RequestEncoding : s.ResponseEncoding);
            if (reader.Count != before) GrpcPairs(s, final: false);
            return;
        }
        Touch(s, MessageOf(client));
        var m = client ? s.Request : s.Response;
        m?.AppendBody(content, _limits.MaxBodyBytes);
    }

    private void EndFrame(Direction d)
    {
        d.InFrame = false;
        var h = d.Frame;
        if (d.ControlLost && h.Type is Http2Frame.Settings or Http2Frame.RstStream or Http2Frame.GoAway or Http2Frame.PushPromise)
        {
            // part of what the frame says went by in a hole: acting on the rest would misread it
            _host.CountDrop("h2_control_frame_cut");
            if (h.Type == Http2Frame.PushPromise)
            {
                // which stream it promises is unknown: its block is read past (the table unsynced)
                d.Promised = 0;
                d.BlockLost = true;
                if (h.Has(Http2Frame.FlagEndHeaders)) HeaderBlock(d);
                else d.ExpectContinuation = true;
            }
            return;
        }
        switch (h.Type)
        {
            case Http2Frame.Data:
                if (h.Has(Http2Frame.FlagEndStream) && DataStream(d) is { } s) EndSide(s, IsClient(d));
                break;
            case Http2Frame.Headers or Http2Frame.PushPromise:
                if (h.Type == Http2Frame.PushPromise)
                {
                    var at = h.Has(Http2Frame.FlagPadded) ? 1 : 0;
                    d.Promised = BinaryPrimitives.ReadUInt32BigEndian(d.Control.AsSpan(at, 4)) & 0x7fffffffu;
                }
                if (h.Has(Http2Frame.FlagEndHeaders)) HeaderBlock(d);
                else d.ExpectContinuation = true;
                break;
            case Http2Frame.Continuation:
                if (h.Has(Http2Frame.FlagEndHeaders))
                {
                    d.ExpectContinuation = false;
                    HeaderBlock(d);
                }
                break;
            case Http2Frame.Settings:
                if (!h.Has(Http2Frame.FlagAck)) Settings(d);
                else if (d.PendingTableSize is { } lowered)
                {
                    // the encoder acknowledged a lower limit: blocks from now on keep to it
                    d.PendingTableSize = null;
                    d.SetProtocolTableSize(lowered);
                }
                break;
            case Http2Frame.RstStream:
                if (_streams.TryGetValue(h.StreamId, out var reset)) Reset(reset, "h2_stream_reset");
                else if (_joined && OpenedUnseen(h.StreamId)) Unnamed(null, h.StreamId, "headers_not_seen", tracked: false);
                break;
            case Http2Frame.WindowUpdate or Http2Frame.Priority when h.StreamId != 0:
                // a joined connection's streams from before: seen, never to be named
                if (_joined && !_streams.ContainsKey(h.StreamId) && OpenedUnseen(h.StreamId)) Unnamed(null, h.StreamId, "headers_not_seen");
                break;
            case Http2Frame.GoAway:
                GoAway(d, BinaryPrimitives.ReadUInt32BigEndian(d.Control.AsSpan(0, 4)) & 0x7fffffffu);
                break;
            // PRIORITY, PING, WINDOW_UPDATE, unknown types: nothing to keep
        }
    }

    /// <summary>SETTINGS from one endpoint bound what the other sends: its header table (the
    /// other direction's HPACK) and its frame size.</summary>
    private void Settings(Direction d)
    {
        var other = d == _egress ? _ingress : _egress;
        var settings = d.Control.AsSpan(0, d.ControlLength - d.ControlLength % 6);
        for (var i = 0; i + 6 <= settings.Length; i += 6)
        {
            var id = BinaryPrimitives.ReadUInt16BigEndian(settings[i..]);
            var value = BinaryPrimitives.ReadUInt32BigEndian(settings[(i + 2)..]);
            if (id == Http2Frame.SettingHeaderTableSize)
            {
                // a higher limit holds at once; a lower one only once the encoder acknowledges it
                // (blocks it encoded before it saw these settings may still use the old one)
                var size = (int)Math.Min(value, int.MaxValue);
                if (size >= other.ProtocolTableSize && other.PendingTableSize is null) other.SetProtocolTableSize(size);
                else other.PendingTableSize = size;
            }
            else if (id == Http2Frame.SettingMaxFrameSize && value is >= Http2Frame.DefaultMaxFrameSize and <= Http2Frame.MaxFrameSizeLimit)
                other.MaxFrameSize = (int)value;
        }
    }

    /// <summary>GOAWAY: streams the sender's peer began above the last stream id were not and will
    /// not be processed.</summary>
    private void GoAway(Direction d, uint lastStreamId)
    {
        var fromServer = !IsClient(d);
        List<Stream>? gone = null;
        foreach (var s in _streams)
        {
            // client streams are odd, pushed (server) streams even
            var initiatedByPeer = fromServer ? (s.Id & 1) == 1 : (s.Id & 1) == 0;
            if (initiatedByPeer && s.Id > lastStreamId) (gone ??= new()).Add(s);
        }
        if (gone is null) return;
        foreach (var s in gone) Reset(s, "h2_goaway");
    }

    // ---- header blocks ----

    /// <summary>The fields of the header block being read, names and values one after the other,
    /// and what the block names as it is decoded. Only a header block's own call uses them, so one
    /// per thread serves every session: the bytes land in memory that is already in cache rather
    /// than in a buffer per session, cold by the time its connection's next block comes.</summary>
    private sealed class BlockFields : IHpackHeaderSink
    {
        [ThreadStatic] private static BlockFields? _forThread;

        private byte[] _bytes = new byte[1024];
        private int _bytesLength;
        private (int Name, int NameLength, int Value, int ValueLength)[] _list = new (int, int, int, int)[32];
        private int _maxHeaderBytes;
        private bool _inUse;

        public int Count;
        public bool TooLarge;
        public int UnknownFields;
        public bool UnknownMayBePseudo;
        // pseudo-header fields: the last of each kind; -1 when absent
        public int Method, Path, Authority, Status;
        public int FirstRegular;
        public bool PseudoAfterRegular; // a pseudo-header field out of place, among the regular ones
        public bool HostField;
        // the first content-type and grpc-encoding fields, -1 when absent: what a gRPC stream is
        // told by, noted here rather than looked for again in the message's fields
        public int ContentType, GrpcEncoding;

        /// <summary>The thread's instance, emptied; a fresh one should a block be read while another's
        /// fields are still in use.</summary>
        public static BlockFields Acquire(int maxHeaderBytes)
        {
            var f = _forThread ??= new BlockFields();
            if (f._inUse) f = new BlockFields();
            f._inUse = true;
            f._maxHeaderBytes = maxHeaderBytes;
            f._bytesLength = f.Count = f.UnknownFields = 0;
            f.TooLarge = f.UnknownMayBePseudo = f.HostField = f.PseudoAfterRegular = false;
            f.Method = f.Path = f.Authority = f.Status = f.FirstRegular = f.ContentType = f.GrpcEncoding = -1;
            return f;
        }

        public void Release()
        {
            _inUse = false;
            // a block near the header limit grew the buffer: not kept for the thread's lifetime
            if (_bytes.Length > 64 * 1024) _bytes = new byte[1024];
        }

        public ReadOnlySpan<byte> Name(int i) => _bytes.AsSpan(_list[i].Name, _list[i].NameLength);

        /// <summary>Fields from..Count-1, whose names and values lie one after the other to the end
        /// of the bytes, added to the message in one copy.</summary>
        public void AddAllFrom(HttpMessage m, int from)
        {
            if (from >= Count) return;
            var start = _list[from].Name;
            m.AddHeaders(_bytes.AsSpan(start, _bytesLength - start), _list.AsSpan(from, Count - from), start);
        }
        public ReadOnlySpan<byte> Value(int i) => _bytes.AsSpan(_list[i].Value, _list[i].ValueLength);
        /// <summary>Field i's name and value, which lie one after the other.</summary>
        public ReadOnlySpan<byte> NameAndValue(int i) => _bytes.AsSpan(_list[i].Name, _list[i].NameLength + _list[i].ValueLength);

        public void OnHeader(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value)
        {
            if (TooLarge) return;
            var need = _bytesLength + name.Length + value.Length;
            if (need + 32 * (Count + 1) > _maxHeaderBytes)
            {
                TooLarge = true; // a small block can expand to much more through the table
                return;
            }
            if (_bytes.Length < need) Array.Resize(ref _bytes, Math.Max(need, _bytes.Length * 2));
            if (Count == _list.Length) Array.Resize(ref _list, _list.Length * 2);
            name.CopyTo(_bytes.AsSpan(_bytesLength));
            value.CopyTo(_bytes.AsSpan(_bytesLength + name.Length));
            var index = Count++;
            _list[index] = (_bytesLength, name.Length, _bytesLength + name.Length, value.Length);
            _bytesLength = need;
            // what the block names is noted as it is decoded (pseudo-header fields: the last of each kind)
            if (!name.IsEmpty && name[0] == (byte)':')
            {
                if (FirstRegular >= 0) PseudoAfterRegular = true;
                if (name.SequenceEqual(":method"u8)) Method = index;
                else if (name.SequenceEqual(":path"u8)) Path = index;
                else if (name.SequenceEqual(":authority"u8)) Authority = index;
                else if (name.SequenceEqual(":status"u8)) Status = index;
            }
            else
            {
                if (FirstRegular < 0) FirstRegular = index;
                switch (name.Length)
                {
                    case 4: if (HttpText.EqualsLower(name, "host"u8)) HostField = true; break;
                    case 12: if (ContentType < 0 && HttpText.EqualsLower(name, "content-type"u8)) ContentType = index; break;
                    case 13: if (GrpcEncoding < 0 && HttpText.EqualsLower(name, "grpc-encoding"u8)) GrpcEncoding = index; break;
                }
            }
        }

        public void OnUnknownField(ReadOnlySpan<byte> name, bool nameKnown)
        {
            UnknownFields++;
            if (!nameKnown || (!name.IsEmpty && name[0] == (byte)':')) UnknownMayBePseudo = true;
        }
    }

    private void HeaderBlock(Direction d) => HeaderBlock(d, d.Block.AsSpan(0, d.BlockLength));

    /// <summary>A header block has ended: <paramref name="block"/> is all of it (the direction's
    /// block buffer, or a frame's payload where it lies in the event).</summary>
    private void HeaderBlock(Direction d, ReadOnlySpan<byte> block)
    {
        var f = BlockFields.Acquire(_limits.MaxHeaderBytes);
        try
        {
            HeaderBlock(d, block, f);
        }
        finally
        {
            f.Release();
        }
    }

    private void HeaderBlock(Direction d, ReadOnlySpan<byte> block, BlockFields f)
    {
        var streamId = d.BlockIsPush ? d.Promised : d.BlockStream;
        var endStream = d.BlockEndStream;
        var blockNs = d.BlockNs;
        var push = d.BlockIsPush;
        var onStream = d.BlockStream;
        string? lost = d.BlockTooLarge ? "header_block_too_large" : d.BlockLost ? "header_block_lost" : null;
        if (lost is null)
        {
            if (d.Hpack.Decode(block, f) is { } error)
            {
                _host.CountDrop(DropLabels.Malformed("h2_" + error));
                lost = "hpack_error";
            }
            else if (f.TooLarge)
            {
                lost = "header_list_too_large";
            }
        }
        else
        {
            d.Hpack.MarkUnsynced(); // the block's table changes went by unseen
        }
        d.ReleaseBlockIfLarge();
        if (f.UnknownFields > 0) _host.Metrics.Http2UnknownFields.Add(f.UnknownFields);

        var s = Find(d, streamId);
        if (lost is not null)
        {
            if (s is { Unnamed: false } && !push && (IsClient(d) ? s.Request : s.Response) is not null)
            {
                // trailers that could not be read: the message they end is kept without them
                _host.CountDrop("h2_trailers_lost");
                if (endStream) EndSide(s, IsClient(d));
                return;
            }
            Unnamed(s, streamId, lost);
            if (endStream && !push && _streams.TryGetValue(streamId, out var ended)) EndSide(ended, IsClient(d));
            return;
        }

        // pseudo-header fields first (RFC 9113 §8.3): who sent the block and what it names
        var method = f.Method >= 0 ? HttpStrings.Method(f.Value(f.Method)) : null;
        int path = f.Path, authority = f.Authority, status = f.Status;
        var regular = f.FirstRegular >= 0 ? f.FirstRegular : f.Count;
        var isRequestBlock = push || method is not null || (status < 0 && s is not null && _clientDirection == d.Dir);
        if (_clientDirection is null && (method is not null || status >= 0))
        {
            // joined mid-stream: the side that sends :method is the client
            _clientDirection = method is not null && !push ? d.Dir : d.Dir == StreamDirection.Egress ? StreamDirection.Ingress : StreamDirection.Egress;
        }

        if (s is not null && (isRequestBlock ? s.Request : s.Response) is { } existing && !push && method is null && status < 0)
        {
            // trailers: appended to the message they end
            for (var i = 0; i < f.Count; i++)
                if (f.Name(i) is var n && (n.IsEmpty || n[0] != (byte)':')) existing.AddHeader(f.NameAndValue(i), n.Length);
            Touch(s, MessageOf(isRequestBlock));
            if (endStream) EndSide(s, isRequestBlock);
            return;
        }

        if (isRequestBlock)
        {
            if (method is null || (path < 0 && method != HttpStrings.Connect) || (path < 0 && authority < 0))
            {
                Unnamed(s, streamId, f.UnknownMayBePseudo ? "hpack_unknown_entry" : "missing_pseudo_header");
                if (endStream && !push && _streams.TryGetValue(streamId, out var ended)) EndSide(ended, true);
                return;
            }

            if (s is null)
            {
                if (_streams.Count >= MaxStreams && !EvictUnnamed()) EvictOldest();
                s = Stream.Rent(streamId);
                _streams.Add(s);
                Remember(d, s);
                NoteStream(streamId);
                if (_firstOpened[streamId & 1] == 0) _firstOpened[streamId & 1] = streamId;
            }
            else if (s.Request is not null)
            {
                _host.CountDrop(DropLabels.Malformed("h2_second_request_headers"));
                return;
            }
            var m = HttpMessage.Rent();
            m.SetRequestLine(method, path >= 0 ? f.Value(path) : f.Value(authority), Version);
            if (authority >= 0 && !f.HostField) m.AddHeader("host"u8, f.Value(authority));
            AddRegular(m, f, regular);
            m.FirstByteNs = blockNs;
            s.Request = m;
            s.Pushed = push;
            Touch(s, RequestMessage);
            _confirmed = true;
            NoteGrpc(s, f);
            if (push) s.RequestEnded = true;
            else if (endStream) EndSide(s, client: true);
            return;
        }

        // a response's header block
        if (status < 0 || !TryStatus(f.Value(status), out var code))
        {
            Unnamed(s, streamId, f.UnknownMayBePseudo ? "hpack_unknown_entry" : s is null && OpenedUnseen(streamId) ? "headers_not_seen" : "missing_pseudo_header");
            if (endStream && _streams.TryGetValue(streamId, out var ended)) EndSide(ended, client: false);
            return;
        }
        _confirmed = true;
        if (s is null || s.Unnamed)
        {
            // its request went by before the collector joined (or could not be named)
            if (s is null) Unnamed(null, streamId, "response_without_request");
            if (endStream && _streams.TryGetValue(streamId, out var gone)) EndSide(gone, client: false);
            return;
        }
        if (code is >= 100 and < 200)
        {
            _host.CountDrop("interim_response"); // 100 Continue, 103 Early Hints: not the answer
            return;
        }
        if (s.Response is not null)
        {
            _host.CountDrop(DropLabels.Malformed("h2_second_response_headers"));
            return;
        }
        var r = HttpMessage.Rent();
        r.SetStatusLine(Version, code, default);
        AddRegular(r, f, regular);
        r.FirstByteNs = blockNs;
        s.Response = r;
        Touch(s, ResponseMessage);
        if (s.Grpc) s.ResponseEncoding = f.GrpcEncoding < 0 ? null : GrpcEncoding(f.Value(f.GrpcEncoding));
        if (endStream) EndSide(s, client: false);
    }

    private static void AddRegular(HttpMessage m, BlockFields f, int from)
    {
        if (!f.PseudoAfterRegular)
        {
            f.AddAllFrom(m, from); // the usual block: every field from the first regular one is a field
            return;
        }
        for (var i = from; i < f.Count; i++)
        {
            var name = f.Name(i);
            if (!name.IsEmpty && name[0] == (byte)':') continue; // a pseudo-header out of place is not a field
            m.AddHeader(f.NameAndValue(i), name.Length);
        }
    }

    private static bool TryStatus(ReadOnlySpan<byte> v, out int code)
    {
        code = 0;
        if (v.Length != 3) return false;
        foreach (var c in v)
        {
            if (c is < (byte)'0' or > (byte)'9') return false;
            code = code * 10 + (c - '0');
        }
        return code >= 100;
    }

    /// <summary>A stream not in the table whose frames arrive was opened unseen (its HEADERS went by
    /// in a hole, or before a joined connection's first bytes), not closed: newer than every
    /// stream seen, or, on a joined connection, older than the first one opened since.</summary>
    private bool OpenedUnseen(uint streamId) =>
        streamId > _highestStream[streamId & 1] || (_joined && (_firstOpened[streamId & 1] == 0 || streamId < _firstOpened[streamId & 1]));

    private void NoteStream(uint streamId)
    {
        ref var highest = ref _highestStream[streamId & 1];
        if (streamId > highest) highest = streamId;
    }

    /// <summary>A stream that cannot be named is counted once, and its later frames are ignored.</summary>
    /// <summary>A full table drops its unnamed entries (each was counted when it was named so):
    /// they only keep later frames of their streams from being counted twice.</summary>
    private bool EvictUnnamed()
    {
        List<Stream>? gone = null;
        foreach (var st in _streams)
            if (st.Unnamed) (gone ??= new()).Add(st);
        if (gone is null) return false;
        foreach (var st in gone) RemoveAndRecycle(st);
        return true;
    }

    /// <summary>A full table of named streams: the oldest goes (its end was lost in a hole, or it
    /// outlived a thousand newer ones, far past any peer's concurrency): emitted as far as it got
    /// when its response had ended, else counted.</summary>
    private void EvictOldest()
    {
        Stream? oldest = null;
        foreach (var st in _streams)
            if (oldest is null || st.Id < oldest.Id) oldest = st;
        if (oldest is not null) Reset(oldest, "h2_stream_stale");
    }

    private void Unnamed(Stream? s, uint streamId, string reason, bool tracked = true)
    {
        NoteStream(streamId);
        if (s is { Unnamed: true }) return; // counted once
        _host.Metrics.Http2StreamsUnnamed[reason].Increment();
        if (s is null)
        {
            if (!tracked || streamId == 0) return;
            if (_streams.Count >= MaxStreams && !EvictUnnamed()) return;
            s = Stream.Rent(streamId);
            _streams.Add(s);
        }
        s.Unnamed = true;
        s.ReleaseMessages();
        Touch(s, AllParts);
    }

    /// <summary>An h2c upgrade's request, read by HTTP/1: its fields are looked for in the message.</summary>
    private static void NoteGrpc(Stream s)
    {
        var m = s.Request!;
        var ct = m.FindHeader("content-type"u8);
        if (ct < 0 || !m.HeaderValue(ct).StartsWith("application/grpc"u8)) return;
        var enc = m.FindHeader("grpc-encoding"u8);
        NoteGrpc(s, enc < 0 ? null : GrpcEncoding(m.HeaderValue(enc)));
    }

    /// <summary>A request read from its header block: the fields were noted as it was decoded.</summary>
    private static void NoteGrpc(Stream s, BlockFields f)
    {
        if (f.ContentType < 0 || !f.Value(f.ContentType).StartsWith("application/grpc"u8)) return;
        NoteGrpc(s, f.GrpcEncoding < 0 ? null : GrpcEncoding(f.Value(f.GrpcEncoding)));
    }

    private static void NoteGrpc(Stream s, string? encoding)
    {
        s.Grpc = true;
        s.GrpcRequests ??= new GrpcMessageReader();
        s.RequestEncoding = encoding;
    }

    private static string? GrpcEncoding(ReadOnlySpan<byte> v) =>
        v.SequenceEqual("gzip"u8) ? "gzip" : v.SequenceEqual("deflate"u8) ? "deflate" : v.SequenceEqual("identity"u8) ? null : "other";

    // ---- streams ending ----

    private void EndSide(Stream s, bool client)
    {
        if (s.Unnamed)
        {
            // counted already; its first END_STREAM frees the entry (a later frame of it is no
            // longer counted: its id is at or below the highest seen)
            RemoveAndRecycle(s);
            return;
        }
        if (client)
        {
            s.RequestEnded = true;
            s.GrpcRequests?.OnEnd();
        }
        else
        {
            s.ResponseEnded = true;
            s.GrpcResponses?.OnEnd();
        }
        if (client && s.Request is not null) s.Request.LastByteNs = _eventNs;
        if (!client && s.Response is not null) s.Response.LastByteNs = _eventNs;
        if (!s.RequestEnded || !s.ResponseEnded)
        {
            Touch(s, ReaderOf(client)); // its reader may have handed on a message cut short
            return;
        }
        Detach(s);
        Complete(s);
        s.Recycle();
    }

    /// <summary>Both sides have ended. What is not handed on here is released by the stream's
    /// Recycle, which follows.</summary>
    private void Complete(Stream s)
    {
        if (s.Unnamed) return;
        if (s.Grpc)
        {
            if (s.Response is null && s.GrpcRequests!.Count == 0) _host.CountDrop("request_without_response"); // (its messages are counted one by one)
            GrpcPairs(s, final: true);
            return;
        }
        if (s.Request is null || s.Response is null)
        {
            _host.CountDrop(s.Request is null ? "response_without_request" : "request_without_response");
            return;
        }
        _host.Emit(s.Request, s.Response, ExchangeDirection);
        s.Request = s.Response = null;
    }

    /// <summary>RST_STREAM or GOAWAY: a stream whose response had ended is emitted (a server may
    /// reset the rest of an upload it answered, RFC 9113 §8.1); anything else is counted. gRPC
    /// messages already whole are emitted.</summary>
    private void Reset(Stream s, string reason)
    {
        Detach(s);
        ResetCore(s, reason);
        s.Recycle();
    }

    private void ResetCore(Stream s, string reason)
    {
        if (s.Unnamed) return;
        if (s.Grpc && s.Response is not null)
        {
            s.GrpcRequests?.OnEnd();
            s.GrpcResponses?.OnEnd();
            GrpcPairs(s, final: true);
            if (!s.ResponseEnded) _host.CountDrop(reason);
            s.ReleaseMessages();
            return;
        }
        if (s.ResponseEnded && s.Request is not null && s.Response is not null)
        {
            if (!s.RequestEnded) s.Request.Incomplete = true;
            _host.Emit(s.Request, s.Response, ExchangeDirection);
            s.Request = s.Response = null;
            return;
        }
        _host.CountDrop(reason);
        s.ReleaseMessages();
    }

    /// <summary>Emits a gRPC stream's message pairs that are settled. Pair i is request message i
    /// with response message i, either side empty when that side sent fewer. A pair waits until
    /// both sides have passed its index (sent message i or ended) and a later message exists or
    /// the stream ended, so that the last pair carries the trailers (grpc-status). Every exchange
    /// carries the stream's request and response headers and x-collector-grpc-index: i.</summary>
    private void GrpcPairs(Stream s, bool final)
    {
        var requests = s.GrpcRequests!;
        var responses = s.GrpcResponses;
        while (true)
        {
            var haveRequest = requests.Count > 0;
            var haveResponse = responses is { Count: > 0 };
            if (!haveRequest && !haveResponse) break;
            var settled = (haveRequest || s.RequestEnded) && (haveResponse || s.ResponseEnded) && s.Response is not null;
            var later = requests.Count > 1 || responses is { Count: > 1 };
            var held = requests.Count + (responses?.Count ?? 0);
            if (!final && !(settled && later) && held <= MaxHeldGrpcMessages) break;
            Touch(s, AllParts); // messages leave the readers, and the last pair takes the stream's own (touched only then: most calls pair nothing)
            if (s.Response is null || s.Request!.IsLost || s.Response.IsLost)
            {
                // nothing to pair them with (no response headers), or the stream was shed: the
                // oldest message is counted
                var queue = haveRequest ? requests : responses!;
                _host.CountDrop(s.Response is null ? final ? "grpc_request_without_response" : "grpc_unanswered_messages_shed" : "grpc_message_shed");
                queue.TakeOldest().Release();
                s.GrpcIndex++;
                continue;
            }
            // the stream's last pair takes the stream's own messages (a unary call copies nothing)
            var last = final && requests.Count <= 1 && (responses?.Count ?? 0) <= 1;
            HttpMessage request, response;
            if (last)
            {
                request = s.Request!;
                response = s.Response;
                s.Request = s.Response = null;
            }
            else
            {
                request = HttpMessage.Rent();
                request.CopyHeadFrom(s.Request!);
                response = HttpMessage.Rent();
                response.CopyHeadFrom(s.Response);
            }
            AddGrpcIndex(request, s.GrpcIndex);
            if (haveRequest) TakeMessage(request, requests);
            if (haveResponse) TakeMessage(response, responses!);
            if (final && !s.ResponseEnded) response.Incomplete = true;
            s.GrpcIndex++;
            _host.Metrics.GrpcMessages.Add((haveRequest ? 1 : 0) + (haveResponse ? 1 : 0));
            _host.Emit(request, response, ExchangeDirection);
        }
        if (final)
        {
            var lost = s.GrpcRequests.LostMessages + (s.GrpcResponses?.LostMessages ?? 0);
            for (var i = 0; i < lost; i++) _host.CountDrop("grpc_message_lost");
        }
    }

    /// <summary>x-collector-grpc-index. Kept out of GrpcPairs: a stackalloc there keeps its loop from
    /// on-stack replacement, so the JIT compiles it optimized at once, without the profile tiering
    /// would give it.</summary>
    private static void AddGrpcIndex(HttpMessage request, int index)
    {
        if ((uint)index < 10) request.AddHeader(GrpcIndexHeader, "0123456789"u8.Slice(index, 1)); // a unary call's 0
        else AddGrpcIndexFormatted(request, index);
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    private static void AddGrpcIndexFormatted(HttpMessage request, int index)
    {
        Span<byte> text = stackalloc byte[11];
        System.Buffers.Text.Utf8Formatter.TryFormat(index, text, out var n);
        request.AddHeader(GrpcIndexHeader, text[..n]);
    }

    private void TakeMessage(HttpMessage m, GrpcMessageReader queue)
    {
        var g = queue.TakeOldest();
        m.AlwaysBase64 = true;
        if (g.Buffer is not null) m.AdoptBody(g.Buffer, g.Length, _limits.MaxBodyBytes + 5); // the message's buffer becomes the body
        if (g.Truncated) m.BodyTruncated = true;
        if (g.HasGap) m.SkipBody(0);
    }

    // ---- holes, loss, the end ----

    public void OnGap(StreamDirection direction, long bytes, ulong eventNs)
    {
        var d = Of(direction);
        _eventNs = eventNs;
        if (d.Resync)
        {
            _host.Metrics.ResyncSkippedBytes.Add(bytes);
            return;
        }
        if (d.PrefaceLeft > 0 || !d.InFrame || d.HeadLength > 0)
        {
            LoseSync(d, "gap");
            return;
        }
        var left = d.Frame.Length - d.FramePos;
        if (bytes > left)
        {
            LoseSync(d, "gap");
            return;
        }
        // the hole is inside this frame's payload: what it hit is marked, and framing stays
        var h = d.Frame;
        var contentStart = Math.Max(d.FramePos, d.PrefixLength);
        var holeEnd = d.FramePos + (int)bytes;
        if (d.FramePos < d.PrefixLength && h.Has(Http2Frame.FlagPadded))
        {
            // the pad length itself is in the hole: where the content ends is unknown
            if (h.Type == Http2Frame.Data && _streams.TryGetValue(h.StreamId, out var ps)) MarkGap(ps, d, long.MaxValue);
            else if (h.Type != Http2Frame.Data) d.BlockLost = true;
            d.PadLength = 0;
        }
        else if (d.FramePos < d.PrefixLength && h.Type == Http2Frame.PushPromise)
        {
            d.ControlLost = true; // the promised stream id (HEADERS' priority fields are not needed)
        }
        if (holeEnd > contentStart && !(d.FramePos < d.PrefixLength && h.Has(Http2Frame.FlagPadded)))
        {
            var contentHole = Math.Min(holeEnd, d.Frame.Length - d.PadLength) - contentStart;
            if (contentHole > 0)
            {
                if (h.Type == Http2Frame.Data) { if (_streams.TryGetValue(h.StreamId, out var s)) MarkGap(s, d, contentHole); }
                else if (h.Type is Http2Frame.Headers or Http2Frame.PushPromise or Http2Frame.Continuation) d.BlockLost = true;
                else d.ControlLost = true; // SETTINGS, GOAWAY, RST_STREAM …: their bytes are not all there
            }
        }
        d.FramePos = holeEnd;
        if (d.FramePos == d.Frame.Length) EndFrame(d);
    }

    private void MarkGap(Stream s, Direction d, long bytes)
    {
        if (s.Unnamed) return;
        var client = IsClient(d);
        Touch(s, s.Grpc ? ReaderOf(client) : MessageOf(client));
        if (s.Grpc)
        {
            var reader = client ? s.GrpcRequests : s.GrpcResponses;
            if (bytes == long.MaxValue)
            {
                if (reader is { FramingLost: false }) _host.CountDrop("grpc_framing_lost"); // messages in the hole are not known
                reader?.LoseFraming();
            }
            else reader?.OnGap(bytes, _limits.MaxBodyBytes, client ? s.RequestEncoding : s.ResponseEncoding);
            return;
        }
        (client ? s.Request : s.Response)?.SkipBody(bytes == long.MaxValue ? 0 : bytes);
    }

    /// <summary>A direction's framing is lost (a hole across a frame boundary, or bytes that break
    /// the protocol): what was in flight is marked, header blocks since are unknown, and frames are
    /// looked for again at the start of later events.</summary>
    private void LoseSync(Direction d, string reason)
    {
        if (reason == "gap") _host.CountDrop(DropLabels.SyncLost("h2_gap"));
        else _host.CountDrop(DropLabels.Malformed("h2_" + reason));
        if (_joined && !_confirmed)
        {
            // the bytes only looked like frames: let HTTP/1 look at the connection instead
            _host.SwitchTo(new Http1Session(_host, joined: true));
            d.InFrame = false;
            d.Resync = true;
            return;
        }
        d.InFrame = false;
        d.HeadLength = 0;
        d.PrefaceLeft = 0;
        d.Resync = true;
        if (d.ExpectContinuation || d.BlockLength > 0)
        {
            d.ExpectContinuation = false;
            d.BlockLength = 0;
        }
        d.Hpack.MarkUnsynced(); // header blocks may have gone by in the hole
        foreach (var s in _streams) MarkGap(s, d, long.MaxValue);
    }

    public void Finish(bool closed, ulong nowNs, string reason)
    {
        _eventNs = nowNs;
        foreach (var s in _streams)
        {
            if (s.Unnamed)
            {
                s.Recycle();
                continue;
            }
            if (s.Grpc && s.Response is not null)
            {
                s.GrpcRequests?.OnEnd();
                s.GrpcResponses?.OnEnd();
                GrpcPairs(s, final: true);
            }
            else if (s.Request is not null && s.Response is not null)
            {
                // what has its header block is handed on, marked as cut by the end
                if (!s.ResponseEnded) s.Response.Incomplete = true;
                if (!s.RequestEnded) s.Request.Incomplete = true;
                _host.Emit(s.Request, s.Response, ExchangeDirection);
                s.Request = s.Response = null;
            }
            else
            {
                _host.CountDrop(s.Request is null ? "response_without_request" : DropLabels.WithoutResponse(reason));
            }
            s.Recycle();
        }
        _streams.Clear();
        _streamsRetained = 0;
        _touched.Clear();
    }

    public void Shed()
    {
        foreach (var s in _streams)
        {
            s.Request?.MarkLost("shed");
            s.Response?.MarkLost("shed");
            if (s.GrpcRequests is { } q) { for (var i = 0; i < q.Count; i++) _host.CountDrop("grpc_message_shed"); q.LoseFraming(); q.Release(); }
            if (s.GrpcResponses is { } p) { for (var i = 0; i < p.Count; i++) _host.CountDrop("grpc_message_shed"); p.LoseFraming(); p.Release(); }
        }
        _recountAll = true;
        foreach (var d in new[] { _egress, _ingress })
        {
            if (d.Block is null) continue;
            if (d.ExpectContinuation || d.BlockLength > 0) d.BlockLost = true;
            d.BlockLength = 0;
            d.ReleaseBlock();
        }
    }

    public void Dispose()
    {
        foreach (var s in _streams) s.Recycle();
        _streams.Clear();
        _streamsRetained = 0;
        _touched.Clear();
        _egress.ReleaseBlock();
        _ingress.ReleaseBlock();
    }

    // ---- state ----

    /// <summary>One direction's frame reader and HPACK decoder.</summary>
    private sealed class Direction(StreamDirection dir, int tableCap, int maxString, bool joined)
    {
        public readonly StreamDirection Dir = dir;
        public readonly HpackDecoder Hpack = NewDecoder(tableCap, maxString, joined);
        public readonly byte[] Head = new byte[Http2Frame.HeaderSize];
        public int HeadLength;
        public bool InFrame;
        public Http2FrameHeader Frame;
        public Stream? LastStream;  // the last stream found or opened here, valid while its Use is LastStreamUse
        public int LastStreamUse;
        public int FramePos, PrefixLength, PadLength;
        public readonly byte[] Control = new byte[64]; // prefix fields and control payloads (SETTINGS: 10 settings)
        public int ControlLength;
        public byte[]? Block;
        public int BlockLength;
        public bool BlockTooLarge, BlockLost, BlockIsPush, BlockEndStream, ExpectContinuation;
        public uint BlockStream, Promised;
        public ulong BlockNs;
        public int PrefaceLeft;
        public bool Resync;
        public bool ControlLost; // a hole covered part of this frame's prefix or control payload
        public bool SawHeaderBlock; // a HEADERS or PUSH_PROMISE began in this direction
        /// <summary>A lower SETTINGS_HEADER_TABLE_SIZE for this direction's encoder, until it acknowledges.</summary>
        public int? PendingTableSize;
        /// <summary>The limit this direction's encoder keeps to (SETTINGS_HEADER_TABLE_SIZE in force).</summary>
        public int ProtocolTableSize { get; private set; } = joined ? int.MaxValue : 4096;

        public void SetProtocolTableSize(int size)
        {
            ProtocolTableSize = size;
            Hpack.SetProtocolMaxTableSize(size);
        }
        /// <summary>The largest frame the other endpoint accepts (its SETTINGS_MAX_FRAME_SIZE);
        /// unknown when joined mid-stream.</summary>
        public int MaxFrameSize = joined ? Http2Frame.MaxFrameSizeLimit : Http2Frame.DefaultMaxFrameSize;

        // Block's size, kept beside it: Retained is read after every event, and reading the
        // array's own length would bring a cold line in each time
        private int _blockCapacity;

        public int Retained => _blockCapacity;

        private static HpackDecoder NewDecoder(int cap, int maxString, bool joined)
        {
            var d = new HpackDecoder(cap, maxString);
            if (joined)
            {
                // the SETTINGS that set the encoder's limit went by before we joined: any size
                // update is taken (our cap still bounds what is kept)
                d.SetProtocolMaxTableSize(int.MaxValue);
                d.MarkUnsynced();
            }
            return d;
        }

        /// <summary>False when this fragment took the block past the cap (once per block).</summary>
        public bool AppendBlock(ReadOnlySpan<byte> fragment, int cap)
        {
            if (BlockTooLarge || BlockLost) return true;
            var need = BlockLength + fragment.Length;
            if (need > cap)
            {
                // endless CONTINUATION or a block past the header limit: nothing more is kept
                BlockTooLarge = true;
                ReleaseBlock();
                return false;
            }
            if (Block is null || Block.Length < need)
            {
                var bigger = BufferPool.Rent(Math.Max(need, Math.Min(cap, Math.Max(1024, (Block?.Length ?? 0) * 2))));
                if (Block is not null)
                {
                    Block.AsSpan(0, BlockLength).CopyTo(bigger);
                    BufferPool.Return(Block);
                }
                Block = bigger;
                _blockCapacity = bigger.Length;
            }
            fragment.CopyTo(Block.AsSpan(BlockLength));
            BlockLength = need;
            return true;
        }

        /// <summary>Most blocks are small: a block buffer is kept between blocks unless it grew.</summary>
        public void ReleaseBlockIfLarge()
        {
            BlockLength = 0;
            if (_blockCapacity > 4096) ReleaseBlock();
        }

        public void ReleaseBlock()
        {
            if (Block is not null) BufferPool.Return(Block);
            Block = null;
            _blockCapacity = 0;
            BlockLength = 0;
        }
    }

    /// <summary>The streams of a connection, by id. A connection has few streams open at once, so
    /// the ids lie side by side in one small array scanned whole (a line or two, vectorized) rather
    /// than in a Dictionary's buckets and entries, two more cold lines per lookup on a busy node.
    /// Bounded by MaxStreams; a freed slot is the next one taken (last freed first), so streams are
    /// visited in the order a Dictionary would visit them.</summary>
    private sealed class StreamTable
    {
        private const uint FreeId = uint.MaxValue; // stream ids are 31 bits: never a stream's
        private uint[] _ids = new uint[8];
        private Stream?[] _slots = new Stream?[8];
        private int[] _free = new int[8];
        private int _end;       // slots in use or freed: the part of the arrays scanned
        private int _freeCount;

        public int Count { get; private set; }

        public bool TryGetValue(uint id, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out Stream? s)
        {
            var i = _ids.AsSpan(0, _end).IndexOf(id);
            s = i < 0 ? null : _slots[i];
            return s is not null;
        }

        public bool ContainsKey(uint id) => TryGetValue(id, out _);

        /// <summary>A stream whose id is not in the table.</summary>
        public void Add(Stream s)
        {
            int i;
            if (_freeCount > 0) i = _free[--_freeCount];
            else
            {
                if (_end == _ids.Length)
                {
                    var size = _ids.Length * 2;
                    Array.Resize(ref _ids, size);
                    Array.Resize(ref _slots, size);
                    Array.Resize(ref _free, size);
                }
                i = _end++;
            }
            _ids[i] = s.Id;
            _slots[i] = s;
            s.Slot = i;
            Count++;
        }

        public void Remove(Stream s)
        {
            var i = s.Slot;
            if ((uint)i >= (uint)_end || _slots[i] != s) return; // not in the table
            _ids[i] = FreeId;
            _slots[i] = null;
            _free[_freeCount++] = i;
            Count--;
        }

        public void Clear()
        {
            _ids.AsSpan(0, _end).Clear();
            _slots.AsSpan(0, _end).Clear();
            _end = _freeCount = Count = 0;
        }

        /// <summary>The streams, in slot order; the table must not change while it is walked.</summary>
        public Enumerator GetEnumerator() => new(this);

        public struct Enumerator(StreamTable table)
        {
            private int _i = -1;
            public Stream Current => table._slots[_i]!;

            public bool MoveNext()
            {
                while (++_i < table._end)
                    if (table._slots[_i] is not null) return true;
                return false;
            }
        }
    }

    /// <summary>One stream's state. Pooled with its gRPC readers: a stream is the one object an
    /// exchange would otherwise cost.</summary>
    private sealed class Stream
    {
        private static readonly ThreadCachedPool<Stream> Pool = new(batch: 64, maxShared: 4096);

        public uint Id;
        public int Slot;       // its place in the session's StreamTable
        public HttpMessage? Request, Response;
        public bool RequestEnded, ResponseEnded, Unnamed, Pushed, Grpc;
        public GrpcMessageReader? GrpcRequests, GrpcResponses; // kept across uses, reset
        public string? RequestEncoding, ResponseEncoding;
        public int GrpcIndex;
        public int Use;        // bumped each time it goes back to the pool
        // its share of the session's running sum, by part (int: messages and readers count in ints)
        public int RequestMessageShare, RequestReaderShare, ResponseMessageShare, ResponseReaderShare;
        public bool Touched;      // listed to be measured again
        public byte TouchedParts; // which parts

        public static Stream Rent(uint id)
        {
            var s = Pool.TryRent() ?? new Stream();
            s.Id = id;
            return s;
        }

        public long Accounted => (long)RequestMessageShare + RequestReaderShare + ResponseMessageShare + ResponseReaderShare;

        public void ClearShares() => RequestMessageShare = RequestReaderShare = ResponseMessageShare = ResponseReaderShare = 0;
        public long Retained =>
            (long)(Request?.RetainedBytes ?? 0) + (Response?.RetainedBytes ?? 0) +
            (GrpcRequests?.Retained ?? 0) + (GrpcResponses?.Retained ?? 0);

        public void ReleaseMessages()
        {
            Request?.Dispose();
            Response?.Dispose();
            Request = Response = null;
            GrpcRequests?.Reset();
            GrpcResponses?.Reset();
        }

        /// <summary>Releases what it holds and goes back to the pool; it must not be used after.</summary>
        public void Recycle()
        {
            ReleaseMessages();
            RequestEnded = ResponseEnded = Unnamed = Pushed = Grpc = false;
            RequestEncoding = ResponseEncoding = null;
            GrpcIndex = 0;
            ClearShares();
            Touched = false;
            TouchedParts = 0;
            Use++;
            Pool.Return(this);
        }
    }
}
