using System.Buffers;
using System.Text;

namespace Collector.Http;

/// <summary>What a stream parser reports to its connection.</summary>
public interface IHttpMessageSink
{
    /// <summary>Method of the request that the next response answers (null when unknown): a
    /// response's framing depends on it (HEAD: no body; CONNECT 2xx: a tunnel).</summary>
    string? PendingRequestMethod { get; }

    /// <summary>A request began (its request line parsed; after a resynchronization, once its
    /// header block parsed too): it takes its place in the connection's FIFO now, before its body,
    /// so that an early response (100 Continue, 413 …) finds it, and so that the FIFO knows when
    /// it began even if the rest of it is lost.</summary>
    void OnRequestStart(HttpStreamParser from, HttpMessage request);

    /// <summary>A message ended: whole, cut by the end of the connection (Incomplete), lost
    /// (a placeholder whose LostReason says why) or interim (1xx). The sink owns it from now on.</summary>
    void OnMessage(HttpStreamParser from, HttpMessage message);

    /// <summary>The parser lost its place in the stream (gap at a message boundary, malformed
    /// bytes, shed memory): messages may have gone by without a trace until it resynchronizes.</summary>
    void OnSyncLost(HttpStreamParser from, string reason);

    /// <summary>Bytes that break the protocol (a metric label).</summary>
    void OnMalformed(HttpStreamParser from, string reason);

    /// <summary>The stream stopped being HTTP/1.x (HTTP/2 preface, unresolved upgrade).</summary>
    void OnOpaque(HttpStreamParser from, string reason);

    /// <summary>Bytes after the stream became opaque (after a 101, in the same event). True when
    /// the sink takes them (an h2c upgrade hands them to HTTP/2); else they are counted as opaque.</summary>
    bool OnOpaqueBytes(HttpStreamParser from, ReadOnlySpan<byte> data) => false;
}

public enum StreamRole { Unknown, Requests, Responses }

/// <summary>Bounds of one message: the header block (start line, fields, trailers) and the body
/// bytes kept. A longer header block is skipped (counted), a longer body is cut (marked).</summary>
public sealed record HttpLimits(int MaxHeaderBytes = 64 * 1024, int MaxBodyBytes = 256 * 1024);

/// <summary>Incremental HTTP/1.x parser for one direction of one connection.
///
/// Kernel events are parsed in place: the ring buffer's sample is read directly (a span over it),
/// header fields and body bytes are copied once into the message's pooled buffers, and only a
/// line that is cut by the end of an event is carried (copied) until the next event completes it.
/// Bodies never wait in an intermediate buffer. The carry is bounded by the header limit, so a
/// stream never holds more than about HTTP_MAX_HEADER_BYTES here, whatever it is sent.
///
/// The state machine follows RFC 9112: start line, header fields, then a body framed by
/// Transfer-Encoding (chunked, with extensions and trailers), Content-Length, nothing (HEAD, 1xx,
/// 204, 304, requests without framing) or the connection's close. 101 and a successful CONNECT end
/// HTTP on the connection (opaque). After malformed bytes or a gap at a message boundary the parser
/// resynchronizes only at the first byte of a kernel event that begins like a start line, and
/// trusts that start only once its header block has parsed: a byte sequence inside a body is
/// never taken for a message.</summary>
public sealed class HttpStreamParser
{
    private enum State : byte
    {
        StartLine,
        Headers,
        BodyFixed,
        ChunkSize,
        ChunkData,
        ChunkDataEnd,
        Trailers,
        BodyUntilClose,
        SkipLine,     // the rest of an over-long header line is discarded
        AwaitUpgrade, // after a CONNECT or Upgrade request: what follows depends on the response
        Resync,       // lost: waiting for an event that starts with a start line
        Opaque,       // after 101 or CONNECT: not HTTP any more
    }

    private const int MaxChunkLine = 4096;

    private readonly HttpLimits _limits;
    private State _state = State.StartLine;
    private State _afterSkip;
    private HttpMessage? _current;
    private long _remaining;
    private int _headerBytes;
    private bool _candidate;      // the message in progress began at a resync point: not proven yet
    private bool _resumeToResync; // bytes held during an upgrade were lost: resync when resuming

    // framing found in the header block (kept apart from the stored fields: a message whose fields
    // are not kept is still framed, so the parser stays in step)
    private long _contentLength;
    private bool _contentLengthInvalid, _transferEncoding, _chunked, _upgrade, _connectionUpgrade;

    private int _lastByte = '\n'; // the byte before the next event (-1: unknown, after a gap)

    // bytes of an incomplete line (or, during AwaitUpgrade, every byte held back), in a pipe
    private readonly CarriedBytes _carry = new();
    private int _carryLength => _carry.Length;
    private ulong _carryNs;

    public HttpStreamParser(HttpLimits limits) => _limits = limits;

    public StreamRole Role { get; set; }

    /// <summary>Bytes discarded while looking for the next message.</summary>
    public long SkippedBytes { get; private set; }
    /// <summary>Bytes that went by after the stream became opaque.</summary>
    public long OpaqueBytes { get; private set; }

    public bool IsOpaque => _state == State.Opaque;
    public bool IsResyncing => _state == State.Resync;
    public bool AwaitingUpgrade => _state == State.AwaitUpgrade;

    /// <summary>Between messages with nothing carried over.</summary>
    public bool AtMessageBoundary => _state == State.StartLine && _carryLength == 0 && _current is null;

    /// <summary>The next bytes are to be trusted only after a start line and header block parse
    /// (a stream joined in the middle, or resumed after a loss).</summary>
    public void StartAsCandidate()
    {
        if (_state == State.StartLine && _current is null) _candidate = true;
    }

    /// <summary>Parses one kernel event's bytes. The span is read during the call only.</summary>
    public void Feed(ReadOnlySpan<byte> data, ulong eventNs, IHttpMessageSink sink)
    {
        if (data.IsEmpty) return;
        if (_state == State.Resync)
        {
            // An event boundary: the only place a resynchronization may begin, and only with a
            // whole start line inside this event (a line joined across events could begin with
            // the tail of a lost message: a method "v73qLA" made of a body's last byte and the
            // next request's method).
            if (!LooksLikeStartLine(data) || data.IndexOf((byte)'\n') < 0 || !StartsProvably(data))
            {
                SkippedBytes += data.Length;
                _lastByte = data[^1];
                return;
            }
            _state = State.StartLine;
            _candidate = true;
        }
        _lastByte = data[^1];
        while (true)
        {
            if (_carryLength == 0)
            {
                var consumed = ParseSpan(data, eventNs, eventNs, sink);
                if (consumed < data.Length) Carry(data[consumed..], eventNs, sink);
                return;
            }
            if (_state == State.AwaitUpgrade)
            {
                Hold(data, sink);
                return;
            }
            // complete the carried line with this event's first line
            var nl = data.IndexOf((byte)'\n');
            var take = nl < 0 ? data.Length : nl + 1;
            AppendCarry(data[..take]);
            data = data[take..];
            if (nl < 0)
            {
                CheckCarryLimit(sink);
                return;
            }
            var carried = _carry.Contiguous();
            var used = ParseSpan(carried, _carryNs, eventNs, sink);
            if (used < carried.Length && _state is not (State.Resync or State.Opaque))
            {
                // only when a message before the held bytes ended in an upgrade wait
                _carry.Consume(used);
            }
            else
            {
                ReleaseCarry();
            }
            if (data.IsEmpty) return;
        }
    }

    /// <summary>Bytes are missing from this direction (the kernel's positions say how many).
    /// Inside a body of known length the parser stays in step and the hole is marked; a message
    /// whose framing is lost is reported lost; at a boundary nothing is known of what went by,
    /// so the parser resynchronizes. Returns true when the parser stayed in step (no message can
    /// have gone by unseen).</summary>
    public bool OnGap(long bytes, ulong eventNs, IHttpMessageSink sink)
    {
        _lastByte = -1; // what came just before the next event is unknown
        switch (_state)
        {
            case State.BodyFixed when bytes < _remaining:
            case State.ChunkData when bytes < _remaining:
                _current!.SkipBody(bytes);
                _remaining -= bytes;
                return true;
            case State.ChunkData when bytes == _remaining:
                _current!.SkipBody(bytes);
                _remaining = 0;
                _state = State.ChunkDataEnd;
                return true;
            case State.BodyFixed:
                // the body ends inside the hole: the message is complete (holed); what followed it is unknown
            {
                var beyond = bytes - _remaining;
                _current!.SkipBody(_remaining);
                _remaining = 0;
                Complete(eventNs, sink);
                if (beyond == 0) return true; // the hole ended exactly at the message's end
                EnterResync(sink, "gap");
                return false;
            }
            case State.BodyUntilClose:
                _current!.SkipBody(bytes);
                return true;
            case State.Trailers:
                // the body is whole; only trailer fields went missing
                ReleaseCarry();
                Complete(eventNs, sink);
                EnterResync(sink, "gap");
                return false;
            case State.Opaque:
                OpaqueBytes += bytes;
                return true;
            case State.Resync:
                SkippedBytes += bytes;
                return false;
            case State.AwaitUpgrade:
                // held bytes and the hole: useless if the upgrade fails; decided by the response
                ReleaseCarry();
                _resumeToResync = true;
                return false;
            default:
                Lose("gap", sink);
                EnterResync(sink, "gap");
                return false;
        }
    }

    /// <summary>The connection ended. closed: the peer closed it (a close-delimited body is then
    /// complete); otherwise it was forgotten (idle, evicted, shutdown) and nothing in progress is
    /// complete. What has its header block is handed on marked Incomplete; the rest is lost.</summary>
    public void OnEnd(bool closed, ulong eventNs, IHttpMessageSink sink)
    {
        switch (_state)
        {
            case State.BodyUntilClose:
                if (!closed) _current!.Incomplete = true;
                Complete(eventNs, sink);
                break;
            case State.BodyFixed or State.ChunkSize or State.ChunkData or State.ChunkDataEnd:
                _current!.Incomplete = true;
                Complete(eventNs, sink);
                break;
            case State.Trailers:
                Complete(eventNs, sink); // the body is whole
                break;
            default:
                if (_current is not null && !_candidate) Lose("incomplete_at_end", sink);
                else DropCurrent();
                break;
        }
        ReleaseCarry();
        _state = State.Opaque; // nothing more is parsed
    }

    /// <summary>Memory shed: the message in progress keeps its framing (the parser stays in step)
    /// but its bytes are dropped and it is marked lost; a carried line is dropped too, and with it
    /// the parser's place in the stream.</summary>
    public void Shed(IHttpMessageSink sink)
    {
        _current?.MarkLost("shed");
        if (_carryLength == 0) return;
        if (_state == State.AwaitUpgrade)
        {
            ReleaseCarry();
            _resumeToResync = true;
            return;
        }
        ReleaseCarry();
        if (_state is State.StartLine or State.Headers or State.Trailers or State.ChunkSize or State.ChunkDataEnd or State.SkipLine)
        {
            if (_current is not null && !_candidate) Lose("shed", sink);
            else DropCurrent();
            EnterResync(sink, "shed");
        }
    }

    /// <summary>The response to a CONNECT or Upgrade request was not a switch: parse what was held.</summary>
    public void ResumeAfterUpgrade(ulong eventNs, IHttpMessageSink sink)
    {
        if (_state != State.AwaitUpgrade) return;
        _state = State.StartLine;
        if (_resumeToResync)
        {
            _resumeToResync = false;
            ReleaseCarry();
            EnterResync(sink, "gap");
            return;
        }
        if (_carryLength == 0) return;
        // what was held goes back through the parser, which may carry again: take it out first
        var length = _carryLength;
        var held = BufferPool.Rent(length);
        _carry.Contiguous().CopyTo(held);
        _carry.Clear();
        try
        {
            Feed(held.AsSpan(0, length), _carryNs, sink);
        }
        finally
        {
            BufferPool.Return(held);
        }
    }

    /// <summary>101 or a successful CONNECT: what follows is not HTTP/1.x.</summary>
    public void BecomeOpaque(IHttpMessageSink sink)
    {
        if (_state == State.Opaque) return;
        OpaqueBytes += _carryLength;
        ReleaseCarry();
        if (_current is not null && !_candidate) Lose("opaque", sink);
        else DropCurrent();
        _state = State.Opaque;
    }

    /// <summary>Returns every pooled buffer (the connection is gone).</summary>
    public void Release()
    {
        _carry.Release();
        DropCurrent();
        _state = State.Opaque;
    }

    /// <summary>Bytes of a line carried to the next event (or held during an upgrade wait).</summary>
    public int CarryBytes => _carry.Retained;

    /// <summary>The message being parsed, if any.</summary>
    public HttpMessage? Current => _current;

    // ---- the state machine over one contiguous span ----

    /// <summary>Parses buf; returns how many bytes were used. The rest is an incomplete line (or
    /// bytes held during an upgrade wait). firstLineNs: time of the event where buf's first byte
    /// arrived (a carried line); eventNs: the current event.</summary>
    private int ParseSpan(ReadOnlySpan<byte> buf, ulong firstLineNs, ulong eventNs, IHttpMessageSink sink)
    {
        var pos = 0;
        while (true)
        {
            switch (_state)
            {
                case State.StartLine:
                {
                    if (pos == buf.Length) return pos;
                    var nl = buf[pos..].IndexOf((byte)'\n');
                    if (nl < 0) return pos;
                    var line = TrimCr(buf.Slice(pos, nl));
                    var ns = pos == 0 ? firstLineNs : eventNs;
                    pos += nl + 1;
                    if (line.IsEmpty) continue; // empty lines between messages are tolerated (RFC 9112 2.2)
                    StartMessage(line, ns, sink);
                    continue;
                }
                case State.Headers:
                case State.Trailers:
                {
                    var nl = buf[pos..].IndexOf((byte)'\n');
                    if (nl < 0) return pos;
                    var line = TrimCr(buf.Slice(pos, nl));
                    pos += nl + 1;
                    _headerBytes += nl + 1;
                    if (line.IsEmpty)
                    {
                        if (_state == State.Trailers) Complete(eventNs, sink);
                        else EndHeaders(eventNs, sink);
                        continue;
                    }
                    FieldLine(line, sink);
                    continue;
                }
                case State.BodyFixed:
                case State.ChunkData:
                {
                    var take = (int)Math.Min(_remaining, buf.Length - pos);
                    _current!.AppendBody(buf.Slice(pos, take), _limits.MaxBodyBytes);
                    pos += take;
                    _remaining -= take;
                    if (_remaining > 0) return pos;
                    if (_state == State.BodyFixed) Complete(eventNs, sink);
                    else _state = State.ChunkDataEnd;
                    continue;
                }
                case State.ChunkDataEnd:
                {
                    if (pos == buf.Length) return pos;
                    if (buf[pos] == (byte)'\n') { pos++; _state = State.ChunkSize; continue; }
                    if (buf[pos] == (byte)'\r')
                    {
                        if (pos + 1 == buf.Length) return pos;
                        if (buf[pos + 1] == (byte)'\n') { pos += 2; _state = State.ChunkSize; continue; }
                    }
                    Abandon("chunk_not_followed_by_crlf", sink);
                    continue;
                }
                case State.ChunkSize:
                {
                    var nl = buf[pos..].IndexOf((byte)'\n');
                    if (nl < 0) return pos;
                    var line = TrimCr(buf.Slice(pos, nl));
                    pos += nl + 1;
                    if (nl + 1 > MaxChunkLine || !TryParseChunkSize(line, out var size))
                    {
                        Abandon("invalid_chunk_size", sink);
                        continue;
                    }
                    if (size == 0)
                    {
                        _state = State.Trailers;
                        continue;
                    }
                    _remaining = size;
                    _state = State.ChunkData;
                    continue;
                }
                case State.BodyUntilClose:
                    _current!.AppendBody(buf[pos..], _limits.MaxBodyBytes);
                    return buf.Length;
                case State.SkipLine:
                {
                    var nl = buf[pos..].IndexOf((byte)'\n');
                    if (nl < 0)
                    {
                        _headerBytes = AddSaturated(_headerBytes, buf.Length - pos);
                        return buf.Length;
                    }
                    _headerBytes = AddSaturated(_headerBytes, nl + 1);
                    pos += nl + 1;
                    _state = _afterSkip;
                    continue;
                }
                case State.AwaitUpgrade:
                    return pos; // held until the response says what these bytes are
                case State.Resync:
                    SkippedBytes += buf.Length - pos;
                    return buf.Length;
                case State.Opaque:
                    if (pos < buf.Length && !sink.OnOpaqueBytes(this, buf[pos..])) OpaqueBytes += buf.Length - pos;
                    return buf.Length;
            }
        }
    }

    private void StartMessage(ReadOnlySpan<byte> line, ulong ns, IHttpMessageSink sink)
    {
        if (line.Length > _limits.MaxHeaderBytes)
        {
            Invalid("start_line_too_long", sink);
            return;
        }
        HttpMessage m;
        if (line.StartsWith("HTTP/"u8))
        {
            // HTTP-version SP 3DIGIT SP [reason]; a missing reason (and its space) is tolerated
            if (Role == StreamRole.Requests || line.Length < 12 || !IsVersion(line[..8]) || line[8] != (byte)' ' ||
                !IsDigit(line[9]) || !IsDigit(line[10]) || !IsDigit(line[11]) || (line.Length > 12 && line[12] != (byte)' ') ||
                line[9] == (byte)'0')
            {
                Invalid("invalid_status_line", sink);
                return;
            }
            m = HttpMessage.Rent();
            m.SetStatusLine(HttpStrings.Version(line[..8]), (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0'),
                line.Length > 13 ? line[13..] : default);
            Role = StreamRole.Responses;
        }
        else
        {
            if (line.SequenceEqual("PRI * HTTP/2.0"u8))
            {
                // HTTP/2 with prior knowledge: not ours to parse
                ReleaseCarry();
                _state = State.Opaque;
                sink.OnOpaque(this, "http2_prior_knowledge");
                return;
            }
            // method SP request-target SP HTTP-version
            var sp1 = line.IndexOf((byte)' ');
            var sp2 = line.LastIndexOf((byte)' ');
            if (Role == StreamRole.Responses || sp1 <= 0 || sp2 <= sp1 + 1 || !IsVersion(line[(sp2 + 1)..]) ||
                !IsToken(line[..sp1]) || !IsTarget(line[(sp1 + 1)..sp2]))
            {
                Invalid("invalid_request_line", sink);
                return;
            }
            m = HttpMessage.Rent();
            m.SetRequestLine(HttpStrings.Method(line[..sp1]), line[(sp1 + 1)..sp2], HttpStrings.Version(line[(sp2 + 1)..]));
            Role = StreamRole.Requests;
        }
        m.FirstByteNs = ns;
        _current = m;
        if (m.IsRequest && !_candidate) sink.OnRequestStart(this, m);
        _headerBytes = line.Length + 2;
        _contentLength = -1;
        _contentLengthInvalid = _transferEncoding = _chunked = _upgrade = _connectionUpgrade = false;
        _state = State.Headers;
    }

    private void FieldLine(ReadOnlySpan<byte> line, IHttpMessageSink sink)
    {
        var m = _current!;
        var trailers = _state == State.Trailers;
        var keep = !m.IsLost && _headerBytes <= _limits.MaxHeaderBytes;
        if (!keep && !trailers && !m.IsLost) m.MarkLost("header_too_large");
        if (line[0] is (byte)' ' or (byte)'\t')
        {
            // obsolete line folding (RFC 9112 5.2): the value continues
            if (keep && !m.ContinueLastHeader(HttpText.Trim(line)))
                Abandon("invalid_field_folding", sink);
            return;
        }
        var colon = line.IndexOf((byte)':');
        if (colon <= 0 || !IsToken(line[..colon]))
        {
            Abandon("invalid_field_line", sink);
            return;
        }
        var name = line[..colon];
        var value = HttpText.Trim(line[(colon + 1)..]);
        if (!trailers) Framing(name, value);
        if (keep) m.AddHeader(name, value);
    }

    private void Framing(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value)
    {
        switch (name.Length)
        {
            case 14 when HttpText.EqualsLower(name, "content-length"u8):
                // a list of identical values ("5, 5") is one length; differing ones are not (RFC 9112 6.3)
                foreach (var range in value.Split((byte)','))
                {
                    var item = HttpText.Trim(value[range]);
                    if (!TryParseDecimal(item, out var n) || (_contentLength >= 0 && n != _contentLength))
                        _contentLengthInvalid = true;
                    else
                        _contentLength = n;
                }
                break;
            case 17 when HttpText.EqualsLower(name, "transfer-encoding"u8):
                _transferEncoding = true;
                _chunked = HttpText.EqualsLower(HttpText.LastListItem(value), "chunked"u8); // the last field's last coding decides
                break;
            case 10 when HttpText.EqualsLower(name, "connection"u8):
                if (HttpText.ListContains(value, "upgrade"u8)) _connectionUpgrade = true;
                break;
            case 7 when HttpText.EqualsLower(name, "upgrade"u8):
                _upgrade = true;
                break;
        }
    }

    private void EndHeaders(ulong eventNs, IHttpMessageSink sink)
    {
        var m = _current!;
        var wasCandidate = _candidate;
        _candidate = false; // a whole header block: this is a message
        if (m.IsRequest)
        {
            if (wasCandidate) sink.OnRequestStart(this, m);
            if (m.Method == HttpStrings.Connect)
            {
                Complete(eventNs, sink); // CONNECT has no content; the response decides what follows
                return;
            }
            if (_transferEncoding)
            {
                if (_chunked) { _state = State.ChunkSize; return; }
                Abandon("request_transfer_encoding_not_chunked", sink); // RFC 9112 6.3: the server answers 400 and closes
                return;
            }
            if (_contentLengthInvalid) { Abandon("invalid_content_length", sink); return; }
            if (_contentLength > 0) { _remaining = _contentLength; _state = State.BodyFixed; return; }
            Complete(eventNs, sink);
            return;
        }
        // responses: RFC 9112 6.3, in order
        var method = sink.PendingRequestMethod;
        if (m.StatusCode is >= 100 and < 200 || m.StatusCode is 204 or 304 || method == HttpStrings.Head ||
            (method == HttpStrings.Connect && m.StatusCode is >= 200 and < 300))
        {
            Complete(eventNs, sink);
            return;
        }
        if (_transferEncoding)
        {
            _state = _chunked ? State.ChunkSize : State.BodyUntilClose;
            return;
        }
        if (_contentLengthInvalid) { Abandon("invalid_content_length", sink); return; }
        if (_contentLength >= 0)
        {
            if (_contentLength == 0) { Complete(eventNs, sink); return; }
            _remaining = _contentLength;
            _state = State.BodyFixed;
            return;
        }
        _state = State.BodyUntilClose;
    }

    private void Complete(ulong eventNs, IHttpMessageSink sink)
    {
        var m = _current!;
        _current = null;
        m.LastByteNs = eventNs;
        _state = State.StartLine;
        if (m.IsRequest)
        {
            if (m.Method == HttpStrings.Connect || (_upgrade && _connectionUpgrade))
                _state = State.AwaitUpgrade;
        }
        else if (m.StatusCode == 101 || (sink.PendingRequestMethod == HttpStrings.Connect && m.StatusCode is >= 200 and < 300))
        {
            _state = State.Opaque;
        }
        sink.OnMessage(this, m);
    }

    /// <summary>A start line that cannot be one.</summary>
    private void Invalid(string reason, IHttpMessageSink sink)
    {
        if (!_candidate) sink.OnMalformed(this, reason);
        EnterResync(sink, "malformed");
    }

    /// <summary>Malformed bytes inside a message: the message is lost (reported, so that pairing
    /// stays in order), and the parser looks for the next message.</summary>
    private void Abandon(string reason, IHttpMessageSink sink)
    {
        if (_candidate)
        {
            DropCurrent(); // it was never a message
        }
        else
        {
            sink.OnMalformed(this, reason);
            Lose("malformed", sink);
        }
        EnterResync(sink, "malformed");
    }

    /// <summary>Hands on the message in progress as lost.</summary>
    private void Lose(string reason, IHttpMessageSink sink)
    {
        var m = _current;
        if (m is null) return;
        _current = null;
        m.MarkLost(reason);
        sink.OnMessage(this, m);
    }

    private void DropCurrent()
    {
        if (_current is { Queued: false }) _current.Dispose(); // a queued request belongs to the connection
        _current = null;
    }

    private void EnterResync(IHttpMessageSink sink, string reason)
    {
        ReleaseCarry();
        DropCurrent();
        var wasCandidate = _candidate;
        _candidate = false;
        if (_state is State.Resync or State.Opaque) return;
        _state = State.Resync;
        if (!wasCandidate) sink.OnSyncLost(this, reason);
    }

    // ---- carried bytes ----

    private void Carry(ReadOnlySpan<byte> rest, ulong eventNs, IHttpMessageSink sink)
    {
        if (_state is State.Resync or State.Opaque) return;
        if (_carryLength == 0) _carryNs = eventNs;
        if (_state == State.AwaitUpgrade)
        {
            Hold(rest, sink);
            return;
        }
        AppendCarry(rest);
        CheckCarryLimit(sink);
    }

    private void Hold(ReadOnlySpan<byte> data, IHttpMessageSink sink)
    {
        if (_resumeToResync) return; // already useless
        if (_carryLength + data.Length > _limits.MaxHeaderBytes)
        {
            // a client that does not wait for the answer to its upgrade: no longer HTTP we can follow
            OpaqueBytes += _carryLength + data.Length;
            ReleaseCarry();
            _state = State.Opaque;
            sink.OnOpaque(this, "upgrade_unresolved");
            return;
        }
        AppendCarry(data);
    }

    /// <summary>An incomplete line may not grow past the header limit.</summary>
    private void CheckCarryLimit(IHttpMessageSink sink)
    {
        switch (_state)
        {
            case State.StartLine when _carryLength > _limits.MaxHeaderBytes:
                Invalid("start_line_too_long", sink);
                break;
            case State.ChunkSize when _carryLength > MaxChunkLine:
                Abandon("invalid_chunk_size", sink);
                break;
            case State.ChunkDataEnd when _carryLength > 1:
                Abandon("chunk_not_followed_by_crlf", sink);
                break;
            case State.Headers or State.Trailers when _headerBytes + _carryLength > _limits.MaxHeaderBytes:
            {
                var line = _carry.Contiguous();
                if (_state == State.Headers && IsFramingFieldPrefix(line))
                {
                    Abandon("framing_field_too_long", sink); // its value cannot be known without buffering it
                    break;
                }
                if (_state == State.Headers && !_current!.IsLost) _current.MarkLost("header_too_large");
                _headerBytes = AddSaturated(_headerBytes, _carryLength);
                _afterSkip = _state;
                _state = State.SkipLine;
                ReleaseCarry();
                break;
            }
        }
    }

    private static bool IsFramingFieldPrefix(ReadOnlySpan<byte> line)
    {
        var colon = line.IndexOf((byte)':');
        var name = colon < 0 ? line[..Math.Min(line.Length, 20)] : line[..colon];
        return HttpText.EqualsLower(name, "content-length"u8) || HttpText.EqualsLower(name, "transfer-encoding"u8);
    }

    private void AppendCarry(ReadOnlySpan<byte> data) => _carry.Append(data);

    private void ReleaseCarry() => _carry.Clear();

    // ---- syntax ----

    /// <summary>Can a resynchronization trust that this event starts at a message's first byte?
    /// A status line or a standard method, yes: a cut could not make one. Any other method token
    /// only when the byte before the event ended a line: otherwise it may be the tail of a longer
    /// token ("E" of "DELETE", the rest lost or skipped).</summary>
    private bool StartsProvably(ReadOnlySpan<byte> data)
    {
        if (data.StartsWith("HTTP/1."u8)) return true;
        var sp = data.IndexOf((byte)' ');
        if (sp > 0 && HttpStrings.IsStandardMethod(data[..sp])) return true;
        return _lastByte == '\n';
    }

    /// <summary>Could an event that starts with these bytes start a message of this stream?</summary>
    private bool LooksLikeStartLine(ReadOnlySpan<byte> data)
    {
        if (Role != StreamRole.Requests)
        {
            var n = Math.Min(data.Length, 7);
            if (data[..n].SequenceEqual("HTTP/1."u8[..n])) return true;
        }
        if (Role != StreamRole.Responses)
        {
            // a method token followed by a space
            for (var i = 0; i < data.Length && i < 32; i++)
            {
                if (data[i] == (byte)' ') return i > 0;
                if (!IsTokenChar(data[i])) return false;
            }
            return data.Length < 32;
        }
        return false;
    }

    private static bool TryParseChunkSize(ReadOnlySpan<byte> line, out long size)
    {
        // chunk-size [ BWS ";" chunk-ext ]: extensions are allowed and ignored
        size = 0;
        var i = 0;
        while (i < line.Length && line[i] == (byte)'0') i++;
        var digits = 0;
        for (; i < line.Length; i++, digits++)
        {
            var v = HexValue(line[i]);
            if (v < 0) break;
            if (digits == 15) return false; // 2^60 and more: not a size anyone sends
            size = size * 16 + v;
        }
        if (i == 0) return false; // no digit at all
        var rest = HttpText.Trim(line[i..]);
        return rest.IsEmpty || rest[0] == (byte)';';
    }

    private static int HexValue(byte c) => c switch
    {
        >= (byte)'0' and <= (byte)'9' => c - '0',
        >= (byte)'a' and <= (byte)'f' => c - 'a' + 10,
        >= (byte)'A' and <= (byte)'F' => c - 'A' + 10,
        _ => -1,
    };

    private static bool TryParseDecimal(ReadOnlySpan<byte> s, out long n)
    {
        n = 0;
        if (s.IsEmpty || s.Length > 18) return false; // under 10^18: no overflow
        foreach (var c in s)
        {
            if (!IsDigit(c)) return false;
            n = n * 10 + (c - '0');
        }
        return true;
    }

    private static int AddSaturated(int a, int b) => (int)Math.Min((long)a + b, int.MaxValue);

    private static ReadOnlySpan<byte> TrimCr(ReadOnlySpan<byte> s) =>
        s.Length > 0 && s[^1] == (byte)'\r' ? s[..^1] : s;

    private static bool IsVersion(ReadOnlySpan<byte> v) =>
        v.Length == 8 && v.StartsWith("HTTP/1."u8) && IsDigit(v[7]);

    private static bool IsDigit(byte c) => (uint)(c - '0') <= 9;

    private static bool IsToken(ReadOnlySpan<byte> s) => !s.IsEmpty && s.IndexOfAnyExcept(TokenChars) < 0;

    /// <summary>Any request-target form: origin ("/p?q"), absolute ("http://h/p"), authority
    /// ("h:443", CONNECT) and asterisk ("*", OPTIONS). No spaces or controls.</summary>
    private static bool IsTarget(ReadOnlySpan<byte> s) => !s.IsEmpty && s.IndexOfAnyInRange((byte)0, (byte)0x20) < 0 && s.IndexOf((byte)0x7f) < 0;

    // RFC 9110 tchar
    private static readonly SearchValues<byte> TokenChars = SearchValues.Create(
        "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"u8);

    private static bool IsTokenChar(byte c) => TokenChars.Contains(c);
}

/// <summary>Interned strings for the common tokens.</summary>
internal static class HttpStrings
{
    public const string Head = "HEAD";
    public const string Connect = "CONNECT";
    private static readonly string[] Methods = ["GET", "POST", "PUT", "DELETE", "PATCH", Head, "OPTIONS", Connect, "TRACE"];
    private static readonly byte[][] MethodBytes = Methods.Select(Encoding.ASCII.GetBytes).ToArray();

    /// <summary>The method as sent: the standard ones interned, any other token as a new string.</summary>
    public static string Method(ReadOnlySpan<byte> m)
    {
        for (var i = 0; i < MethodBytes.Length; i++)
            if (m.SequenceEqual(MethodBytes[i])) return Methods[i];
        return Encoding.ASCII.GetString(m);
    }

    public static bool IsStandardMethod(ReadOnlySpan<byte> m)
    {
        foreach (var b in MethodBytes)
            if (m.SequenceEqual(b)) return true;
        return false;
    }

    public static string Version(ReadOnlySpan<byte> v) =>
        v.SequenceEqual("HTTP/1.1"u8) ? "HTTP/1.1" : v.SequenceEqual("HTTP/1.0"u8) ? "HTTP/1.0" : Encoding.ASCII.GetString(v);
}
