using Collector.Connections;
using Collector.Events;

namespace Collector.Http;

/// <summary>HTTP/1.x on a connection: its two byte streams with their parsers, and the requests in
/// the order they were sent, each waiting for its response (HTTP/1.1 answers in order).
///
/// Roles come from the bytes: the stream that carries a request line is the client's. Pairing is
/// FIFO, and every message a parser saw begin keeps its place (a lost one as a placeholder), so a
/// message that cannot be kept never shifts the pairing of the others.
///
/// Messages can also go by without a trace (a gap at a message boundary, malformed bytes). Then:
/// - responses lost unseen: every request still waiting may have been answered by one of them, so
///   none of them is paired any more (counted);
/// - requests lost unseen: a client that waits for each answer before it sends the next request
///   cannot have an unseen request between a known one and its answer, and kernel timestamps show
///   an answer to an unseen request (it began before the next known request did);
/// - a pipelining client breaks both arguments: once pipelining is seen, a connection that loses
///   messages gives up pairing and counts everything after. A connection that has not shown
///   either way is treated as waiting for answers (clients that pipeline are rare) until it shows
///   pipelining.</summary>
internal sealed class Http1Session : IProtocolSession, IHttpMessageSink
{
    private const int MaxPendingRequests = 128;

    private struct Entry
    {
        public HttpMessage Request;
        public HttpMessage? Response;
        public bool RequestDone;
        public bool Unanswerable; // its response was lost
    }

    private readonly ISessionHost _host;
    private readonly Http1Direction _egress;
    private readonly Http1Direction _ingress;
    private Entry[] _entries = new Entry[4];
    private int _head, _count, _answered; // entries [0, _answered) have their response (or lost it)
    private bool _lossSeen;   // a parser lost its place: messages may have gone by unseen
    private bool _timeChecks; // pairing consults kernel timestamps (after a loss, or joined mid-stream)
    private bool _sequential; // seen: a request sent only after the previous one was answered
    private bool _pipelined;  // seen: a request sent before the previous one's answer began
    private bool _abandoned, _resumeRequests;
    private int _paired;

    /// <param name="joined">the connection existed before the collector (or its first bytes came
    /// after a hole): its first bytes may be mid-message.</param>
    public Http1Session(ISessionHost host, bool joined)
    {
        _host = host;
        _egress = new Http1Direction(StreamDirection.Egress, host.Limits);
        _ingress = new Http1Direction(StreamDirection.Ingress, host.Limits);
        if (joined)
        {
            _egress.Parser.StartAsCandidate();
            _ingress.Parser.StartAsCandidate();
            _timeChecks = true; // what went by before is unknown: pairing consults the clock
        }
    }

    public int PendingRequests => _count;

    public bool HasMessagesInProgress => _count > 0 || _egress.Parser.Current is not null || _ingress.Parser.Current is not null;

    private Http1Direction Stream(StreamDirection d) => d == StreamDirection.Egress ? _egress : _ingress;
    private Http1Direction Other(HttpStreamParser p) => ReferenceEquals(p, _egress.Parser) ? _ingress : _egress;
    private Http1Direction Own(HttpStreamParser p) => ReferenceEquals(p, _egress.Parser) ? _egress : _ingress;
    private ulong _eventNs;

    public void OnGap(StreamDirection direction, long bytes, ulong eventNs)
    {
        _eventNs = eventNs;
        var stream = Stream(direction);
        if (!stream.Parser.OnGap(bytes, eventNs, this)) stream.LossNs = eventNs; // messages may be in the hole
    }

    public void OnData(StreamDirection direction, ReadOnlySpan<byte> payload, ulong eventNs)
    {
        _eventNs = eventNs;
        var stream = Stream(direction);
        var parser = stream.Parser;
        var other = Other(parser).Parser;
        var parserSkipped = parser.SkippedBytes;
        var otherSkipped = other.SkippedBytes;
        var opaque = parser.OpaqueBytes + other.OpaqueBytes;
        parser.Feed(payload, eventNs, this);
        if (_resumeRequests)
        {
            // a CONNECT or Upgrade request was answered without a switch: parse what it held back
            _resumeRequests = false;
            other.ResumeAfterUpgrade(eventNs, this);
        }
        // both parsers: an event on one side can end the other's wait (upgrade, CONNECT, HTTP/2)
        var skipped = parser.SkippedBytes - parserSkipped + other.SkippedBytes - otherSkipped;
        if (skipped != 0)
        {
            // bytes skipped while resynchronizing may have held whole messages
            if (parser.SkippedBytes != parserSkipped) stream.LossNs = _eventNs;
            if (other.SkippedBytes != otherSkipped) Own(other).LossNs = _eventNs;
            _host.Metrics.ResyncSkippedBytes.Add(skipped);
        }
        var opaqueNow = parser.OpaqueBytes + other.OpaqueBytes;
        if (opaqueNow != opaque) _host.Metrics.OpaqueBytes.Add(opaqueNow - opaque);
    }

    /// <summary>The connection is finished: a close completes a close-delimited body; requests
    /// left without a response are counted.</summary>
    public void Finish(bool closed, ulong nowNs, string reason)
    {
        // requests first: a response completed by the close then finds its request complete
        var (requests, responses) = _ingress.Parser.Role == StreamRole.Responses || _egress.Parser.Role == StreamRole.Requests
            ? (_egress, _ingress) : (_ingress, _egress);
        requests.Parser.OnEnd(closed, nowNs, this);
        responses.Parser.OnEnd(closed, nowNs, this);
        Flush();
        while (_count > 0)
        {
            var e = Pop();
            var r = e.Request;
            _host.Metrics.CountHttpDrop(r.IsLost ? DropLabels.Request(r.LostReason!)
                : e.Unanswerable ? "response_lost"
                : DropLabels.WithoutResponse(reason));
            r.Dispose();
            e.Response?.Dispose();
        }
    }

    /// <summary>Memory shed: every byte held is dropped. The messages involved are marked lost
    /// (counted when their exchange completes) but keep their place, and parsers inside a body
    /// stay in step, so pairing survives.</summary>
    public void Shed()
    {
        _egress.Parser.Shed(this);
        _ingress.Parser.Shed(this);
        for (var i = 0; i < _count; i++)
        {
            ref var e = ref At(i);
            e.Request.MarkLost("shed");
            e.Response?.MarkLost("shed");
        }
    }

    public long Retained
    {
        get
        {
            long r = _egress.Parser.CarryBytes + _ingress.Parser.CarryBytes;
            if (_egress.Parser.Current is { Queued: false } ec) r += ec.RetainedBytes;
            if (_ingress.Parser.Current is { Queued: false } ic) r += ic.RetainedBytes;
            for (var i = 0; i < _count; i++)
            {
                ref var e = ref At(i);
                r += e.Request.RetainedBytes + (e.Response?.RetainedBytes ?? 0);
            }
            return r;
        }
    }

    // ---- the FIFO of requests ----

    private ref Entry At(int i) => ref _entries[(_head + i) & (_entries.Length - 1)];

    private void Push(HttpMessage request)
    {
        if (_count == _entries.Length)
        {
            var bigger = new Entry[_entries.Length * 2];
            for (var i = 0; i < _count; i++) bigger[i] = At(i);
            _entries = bigger;
            _head = 0;
        }
        request.Queued = true;
        _entries[(_head + _count) & (_entries.Length - 1)] = new Entry { Request = request };
        _count++;
    }

    private Entry Pop()
    {
        ref var slot = ref _entries[_head];
        var e = slot;
        slot = default;
        _head = (_head + 1) & (_entries.Length - 1);
        _count--;
        if (_answered > 0) _answered--;
        return e;
    }

    /// <summary>Emits (or counts) exchanges from the head of the FIFO while they are complete.</summary>
    private void Flush()
    {
        while (_count > 0)
        {
            ref var head = ref At(0);
            if (!head.RequestDone) return;
            if (head.Unanswerable)
            {
                var lost = Pop();
                _host.Metrics.CountHttpDrop(lost.Request.IsLost ? DropLabels.Request(lost.Request.LostReason!) : "response_lost");
                lost.Request.Dispose();
                continue;
            }
            if (head.Response is null) return;
            var e = Pop();
            var requestDirection = _ingress.Parser.Role == StreamRole.Requests ? StreamDirection.Ingress
                : _egress.Parser.Role == StreamRole.Requests ? StreamDirection.Egress
                : StreamDirection.Ingress;
            _host.Emit(e.Request, e.Response!, requestDirection == StreamDirection.Ingress ? 1 : 2);
        }
    }

    /// <summary>Gives up pairing (a pipelined connection lost messages): what is waiting is
    /// counted as it completes, and so is everything after.</summary>
    private void Abandon()
    {
        if (_abandoned) return;
        _abandoned = true;
        _host.Metrics.CountHttpDrop("pipelined_pairing_lost");
        for (var i = 0; i < _count; i++)
        {
            ref var e = ref At(i);
            e.Request.MarkLost("pairing_lost");
            e.Response?.MarkLost("pairing_lost");
            if (e.Response is null) e.Unanswerable = true;
        }
        _answered = _count;
    }

    private void NoteLoss()
    {
        _lossSeen = _timeChecks = true;
        if (_pipelined) Abandon();
    }

    /// <summary>Pipelining seen: after a loss, FIFO order cannot be restored provably.</summary>
    private void NotePipelined()
    {
        _pipelined = true;
        if (_lossSeen) Abandon();
    }

    // ---- IHttpMessageSink ----

    public string? PendingRequestMethod
    {
        get
        {
            var responses = _egress.Parser.Role == StreamRole.Responses || _ingress.Parser.Role == StreamRole.Requests ? _egress : _ingress;
            var i = NextToAnswer(responses.LossNs);
            return i < _count ? At(i).Request.Method : null;
        }
    }

    /// <summary>The entry the next response answers: the first one still waiting that began after
    /// responses last went by unseen (an earlier one may have been answered by one of those).</summary>
    private int NextToAnswer(ulong responseLossNs)
    {
        var i = _answered;
        while (i < _count && (At(i).Unanswerable || At(i).Request.FirstByteNs < responseLossNs)) i++;
        return i;
    }

    void IHttpMessageSink.OnRequestStart(HttpStreamParser from, HttpMessage request)
    {
        var responses = Other(from).Parser;
        if (responses.Role == StreamRole.Unknown) responses.Role = StreamRole.Responses;
        if (_abandoned) return;
        // How does this client use the connection? Requests still waiting for an answer whose
        // response has not begun mean pipelining, unless the client is known to wait for answers
        // (then one of those answers was lost and the loss is not seen yet).
        var waiting = 0;
        for (var i = _answered; i < _count; i++)
            if (!At(i).Unanswerable) waiting++;
        if (waiting > 0 && responses.Current is not null) waiting--; // its answer is arriving
        if (waiting > 0)
        {
            if (!_sequential) NotePipelined();
        }
        else if (_paired > 0 || _count > 0)
        {
            _sequential = true;
        }
        if (_abandoned) return;
        Enqueue(request);
    }

    private void Enqueue(HttpMessage request)
    {
        if (_count >= MaxPendingRequests)
        {
            // far more unanswered requests than any client pipelines: this is not a request/response
            // conversation we can pair; everything waiting is counted and the connection gives up pairing
            _host.Metrics.CountHttpDrop("too_many_pending_requests");
            Abandon();
            request.MarkLost("pairing_lost"); // counted when it ends
            return;
        }
        Push(request);
    }

    void IHttpMessageSink.OnMessage(HttpStreamParser from, HttpMessage message)
    {
        if (message.IsRequest)
        {
            OnRequestEnd(message);
            return;
        }
        var requests = Other(from);
        if (requests.Parser.Role == StreamRole.Unknown) requests.Parser.Role = StreamRole.Requests;
        if (message.IsInterim)
        {
            _host.Metrics.CountHttpDrop("interim_response"); // 100 Continue, 103 Early Hints: not the answer
            message.Dispose();
            return;
        }
        if (message.StatusCode == 101 && !requests.Parser.IsOpaque && !_abandoned && TryUpgradeToHttp2(message, requests, from))
            return;
        if (message.StatusCode == 101 && !requests.Parser.IsOpaque)
        {
            // Switching Protocols: neither direction is HTTP/1.x from here on
            _host.Metrics.CountHttpDrop("connection_upgraded");
            requests.Parser.BecomeOpaque(this);
        }
        if (_abandoned)
        {
            _host.Metrics.CountHttpDrop(DropLabels.Response("pairing_lost"));
            message.Dispose();
            return;
        }
        Pair(message, requests.Parser);
        Flush();
    }

    private Http2.Http2Session? _upgradedTo;
    private StreamDirection _upgradedResponses; // the direction whose bytes after the switch go to _upgradedTo

    /// <summary>101 to a request with Upgrade: h2c (RFC 7540 §3.2): the connection is HTTP/2 from
    /// the response's next byte, and the request is its stream 1. Only when that request is the one
    /// being answered, whole, with nothing pipelined after it.</summary>
    private bool TryUpgradeToHttp2(HttpMessage response, Http1Direction requests, HttpStreamParser responses)
    {
        if (_count != 1 || _answered != 0 || !At(0).RequestDone) return false;
        var request = At(0).Request;
        var upgrade = request.FindHeader("upgrade"u8);
        if (upgrade < 0 || !HttpText.ListContains(request.HeaderValue(upgrade), "h2c"u8) || request.IsLost) return false;
        Pop();
        request.Queued = false;
        response.Dispose();
        requests.Parser.BecomeOpaque(this);
        _upgradedResponses = Own(responses).Direction;
        _upgradedTo = new Http2.Http2Session(_host, clientDirection: requests.Direction, Http2.Http2Start.Upgrade, request);
        _host.Metrics.Http2Connections["upgrade"].Increment();
        _host.SwitchTo(_upgradedTo);
        return true;
    }

    bool IHttpMessageSink.OnOpaqueBytes(HttpStreamParser from, ReadOnlySpan<byte> data)
    {
        if (_upgradedTo is null || Own(from).Direction != _upgradedResponses) return false;
        _upgradedTo.OnData(_upgradedResponses, data, _eventNs); // the bytes after the switch, in its event
        return true;
    }

    private void OnRequestEnd(HttpMessage request)
    {
        if (!request.Queued)
        {
            if (_abandoned || request.LostReason == "pairing_lost")
            {
                _host.Metrics.CountHttpDrop(DropLabels.Request("pairing_lost"));
                request.Dispose();
                return;
            }
            // not announced (it cannot happen today: every request the parser hands on was
            // announced first); it still takes its place so that its response is not paired with the next
            Enqueue(request);
        }
        for (var i = 0; i < _count; i++)
        {
            ref var e = ref At(i);
            if (!ReferenceEquals(e.Request, request)) continue;
            e.RequestDone = true;
            break;
        }
        Flush();
    }

    private void Pair(HttpMessage response, HttpStreamParser requests)
    {
        // A request that began before responses last went by unseen may have been answered by one
        // of them: it cannot be paired. One that began after has this as its first answer.
        var i = NextToAnswer(Other(requests).LossNs);
        for (var k = _answered; k < i; k++) At(k).Unanswerable = true;
        _answered = i;
        // Without a loss FIFO is exact and no clock is consulted (threads of one process can see
        // their syscalls' exits in a different order than the bytes moved). After one, a response
        // never answers a request that began after it: that request's answer is still to come.
        if (i >= _count || (_timeChecks && At(i).Request.FirstByteNs > response.FirstByteNs))
        {
            // its request was never seen (lost, or sent before the collector looked)
            _host.Metrics.CountHttpDrop("response_without_request");
            response.Dispose();
            return;
        }
        ref var e = ref At(i);
        e.Response = response;
        _answered = i + 1;
        _paired++;
        if (i + 1 < _count && At(i + 1).Request.FirstByteNs < response.FirstByteNs)
            NotePipelined(); // the next request was sent before this response began
        if (_abandoned) return;
        if (IsTunnel(e.Request, response))
        {
            _host.Metrics.CountHttpDrop("connect_tunnel");
            requests.BecomeOpaque(this);
        }
        else if (requests.AwaitingUpgrade && response.StatusCode != 101)
        {
            _resumeRequests = true; // after this event: the request stream may parse again
        }
    }

    private static bool IsTunnel(HttpMessage? request, HttpMessage response) =>
        request?.Method == "CONNECT" && response.StatusCode is >= 200 and < 300;

    void IHttpMessageSink.OnSyncLost(HttpStreamParser from, string reason)
    {
        _host.Metrics.CountHttpDrop(DropLabels.SyncLost(reason));
        Own(from).LossNs = _eventNs;
        NoteLoss();
    }

    void IHttpMessageSink.OnMalformed(HttpStreamParser from, string reason) =>
        _host.Metrics.CountHttpDrop(DropLabels.Malformed(reason));

    void IHttpMessageSink.OnOpaque(HttpStreamParser from, string reason)
    {
        if (reason == "http2_prior_knowledge" && _paired == 0 && _count == 0 && Other(from).Parser.Current is null && _upgradedTo is null)
        {
            // the preface came in pieces too short to tell at the first event: HTTP/2 from here,
            // its first line read ("PRI * HTTP/2.0\r\n"); the rest of the preface and the frames follow
            var clientDirection = Own(from).Direction;
            _upgradedTo = new Http2.Http2Session(_host, clientDirection, Http2.Http2Start.Preface, prefaceRead: 16);
            _upgradedResponses = clientDirection; // what follows the line in this event is the client's
            _host.Metrics.Http2Connections["preface"].Increment();
            Other(from).Parser.BecomeOpaque(this);
            _host.SwitchTo(_upgradedTo);
            return;
        }
        _host.Metrics.CountHttpDrop("opaque_" + reason);
        Other(from).Parser.BecomeOpaque(this);
    }

    public void Dispose()
    {
        _egress.Dispose(); // parsers first: a request in progress may also wait in the FIFO
        _ingress.Dispose();
        while (_count > 0)
        {
            var e = Pop();
            e.Request.Dispose();
            e.Response?.Dispose();
        }
    }
}
