using System.Net;
using Collector.Events;
using Collector.Http;
using Collector.Metrics;

namespace Collector.Connections;

/// <summary>(tgid, fd, generation): the kernel changes the generation when an fd number is reused,
/// so two connections never merge.</summary>
public readonly record struct ConnectionId(uint Tgid, uint Fd, uint Generation);

/// <summary>What the kernel told us about a connection when it first saw it.</summary>
public sealed record ConnectionInfo(
    IPAddress LocalAddress, int LocalPort, IPAddress RemoteAddress, int RemotePort,
    ConnectionOrigin Origin, string ProcessName)
{
    private string? _local, _remote;

    /// <summary>"addr:port" ("[v6]:port"), made once per connection.</summary>
    public string LocalEndpoint => _local ??= Endpoint(LocalAddress, LocalPort);
    public string RemoteEndpoint => _remote ??= Endpoint(RemoteAddress, RemotePort);

    /// <summary>The encoder's JSON strings of the endpoints and process name, made once per
    /// connection (every exchange on it repeats them). Not part of the record's value.</summary>
    internal byte[]? LocalEndpointJson, RemoteEndpointJson, ProcessNameJson;

    /// <summary>The encoder's fields after the payloads, the same for every exchange of this
    /// connection in one direction (addresses, identity, process): made once, copied in one piece.
    /// The time, which changes, goes at AktoTailSplit. Keyed by what it was made from.</summary>
    internal byte[]? AktoTail;
    internal int AktoTailSplit, AktoTailDirection;
    internal ConnectionId AktoTailConnection;
    internal object? AktoTailIdentity;

    public bool Equals(ConnectionInfo? other) =>
        other is not null && LocalAddress.Equals(other.LocalAddress) && LocalPort == other.LocalPort &&
        RemoteAddress.Equals(other.RemoteAddress) && RemotePort == other.RemotePort &&
        Origin == other.Origin && ProcessName == other.ProcessName;

    public override int GetHashCode() => HashCode.Combine(LocalAddress, LocalPort, RemoteAddress, RemotePort, Origin, ProcessName);

    public static string Endpoint(IPAddress address, int port) =>
        address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6
            ? $"[{address}]:{port}"
            : $"{address}:{port}";
}

/// <summary>A request paired with its response, ready for filtering and output. Made by the table
/// from a pool and returned to it by Dispose (with both messages); one built by hand works the same.</summary>
public sealed class HttpExchange : IDisposable
{
    private ConnectionId _connection;
    private ConnectionInfo? _info;
    private int _direction;
    private EventSource _source;
    private HttpMessage _request = null!, _response = null!;

    public required ConnectionId Connection { get => _connection; init => _connection = value; }
    public required ConnectionInfo? Info { get => _info; init => _info = value; }
    /// <summary>1: the traced process is the server (inbound); 2: it is the client (outbound).</summary>
    public required int Direction { get => _direction; init => _direction = value; }
    public required EventSource Source { get => _source; init => _source = value; }
    public required HttpMessage Request { get => _request; init => _request = value; }
    public required HttpMessage Response { get => _response; init => _response = value; }
    /// <summary>Where the output stage counts what it does to the bodies (decoding); set by the table.</summary>
    internal CollectorMetrics? Metrics { get; private set; }

    private const int MaxPooled = 4096;
    private static readonly ThreadCachedPool<HttpExchange> Pool = new(batch: 64, maxShared: MaxPooled);
    private bool _inPool;

    internal static HttpExchange Rent(ConnectionId connection, ConnectionInfo? info, int direction, EventSource source,
        HttpMessage request, HttpMessage response, CollectorMetrics metrics)
    {
        var x = Pool.TryRent() ?? new HttpExchange { Connection = connection, Info = info, Direction = direction, Source = source, Request = request, Response = response };
        x._inPool = false;
        x._connection = connection;
        x._info = info;
        x._direction = direction;
        x._source = source;
        x._request = request;
        x._response = response;
        x.Metrics = metrics;
        return x;
    }

    /// <summary>Returns both messages and the exchange to their pools; it must not be used after.</summary>
    public void Dispose()
    {
        if (_inPool) return;
        _request?.Dispose();
        _response?.Dispose();
        _request = _response = null!;
        _info = null;
        Metrics = null;
        _inPool = true;
        Pool.Return(this);
    }
}

/// <summary>One traced connection: its two byte streams with their parsers, and the requests in
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
internal sealed class Connection : IHttpMessageSink, IDisposable
{
    private const int MaxPendingRequests = 128;

    private struct Entry
    {
        public HttpMessage Request;
        public HttpMessage? Response;
        public bool RequestDone;
        public bool Unanswerable; // its response was lost
    }

    private readonly ConnectionTable _table;
    private readonly HttpLimits _limits;
    private DirectionStream _egress;
    private DirectionStream _ingress;
    private Entry[] _entries = new Entry[4];
    private int _head, _count, _answered; // entries [0, _answered) have their response (or lost it)
    private bool _lossSeen;   // a parser lost its place: messages may have gone by unseen
    private bool _timeChecks; // pairing consults kernel timestamps (after a loss, or joined mid-stream)
    private bool _sequential; // seen: a request sent only after the previous one was answered
    private bool _pipelined;  // seen: a request sent before the previous one's answer began
    private bool _abandoned, _resumeRequests;
    private int _paired;

    public Connection(ConnectionTable table, ConnectionId id, HttpLimits limits)
    {
        _table = table;
        _limits = limits;
        Id = id;
        _egress = new DirectionStream(StreamDirection.Egress, limits);
        _ingress = new DirectionStream(StreamDirection.Ingress, limits);
    }

    public ConnectionId Id { get; }
    public ConnectionInfo? Info { get; private set; }
    /// <summary>The streams carry TLS plaintext from a library probe, not syscall bytes.</summary>
    public bool Tls { get; private set; }
    private ulong _tlsSession; // the TLS session (SSL *) whose plaintext the streams hold
    public EventSource Source { get; private set; }
    /// <summary>Environment.TickCount64 of the last event.</summary>
    public long LastActivity { get; set; }
    public LinkedListNode<Connection>? LruNode { get; set; }
    /// <summary>Bytes this connection holds (carried lines, messages in progress, waiting requests).</summary>
    public long Retained { get; private set; }
    public int PendingRequests => _count;

    public void SetInfo(ConnectionInfo info)
    {
        Info = info;
        if (info.Origin == ConnectionOrigin.Unknown)
        {
            // a connection that existed before the collector: its first bytes may be mid-message
            _egress.Parser.StartAsCandidate();
            _ingress.Parser.StartAsCandidate();
            _timeChecks = true; // what went by before is unknown: pairing consults the clock
        }
    }

    private DirectionStream Stream(StreamDirection d) => d == StreamDirection.Egress ? _egress : _ingress;
    private DirectionStream Other(HttpStreamParser p) => ReferenceEquals(p, _egress.Parser) ? _ingress : _egress;
    private DirectionStream Own(HttpStreamParser p) => ReferenceEquals(p, _egress.Parser) ? _egress : _ingress;
    private ulong _eventNs;

    public void OnData(in DataEventHeader h, ReadOnlySpan<byte> payload)
    {
        var tls = h.Source != EventSource.Syscall;
        if (tls && !Tls)
        {
            // First plaintext from a TLS library: whatever the syscalls showed was not the
            // application's bytes. Start both streams afresh at plaintext position 0.
            Tls = true;
            ResetStreams("tls_switch");
        }
        else if (!tls && Tls)
        {
            _table.Metrics.CountHttpDrop("tls_ciphertext_ignored");
            return; // ciphertext of a TLS connection: never parsed (the kernel normally withholds it)
        }
        if (tls && h.TlsCtx != _tlsSession)
        {
            // Another TLS session on this socket: TLS inside TLS (a tunnel through an HTTPS
            // proxy: the CONNECT exchange came through the proxy's session, whose plaintext the
            // kernel stops sending once it carries the origin's records). The new session's
            // plaintext starts at its own position 0.
            if (_tlsSession != 0) ResetStreams("tls_session_switch");
            _tlsSession = h.TlsCtx;
        }
        Source = h.Source;
        _eventNs = h.Header.TimestampNs;
        var stream = Stream(h.Direction);
        var parser = stream.Parser;
        var position = h.Position;
        if (position < stream.NextPosition)
        {
            // overlap with what we already have: keep only the new tail
            var overlap = stream.NextPosition - position;
            if (overlap >= (ulong)payload.Length) return;
            payload = payload[(int)overlap..];
            position = stream.NextPosition;
        }
        var other = Other(parser).Parser;
        var parserSkipped = parser.SkippedBytes;
        var otherSkipped = other.SkippedBytes;
        var opaque = parser.OpaqueBytes + other.OpaqueBytes;
        if (position > stream.NextPosition)
        {
            var gap = (long)(position - stream.NextPosition);
            _table.Metrics.GapBytes.Add(gap);
            if (!parser.OnGap(gap, h.Header.TimestampNs, this)) stream.LossNs = _eventNs; // messages may be in the hole
        }
        stream.NextPosition = position + (ulong)payload.Length;
        parser.Feed(payload, h.Header.TimestampNs, this);
        if (_resumeRequests)
        {
            // a CONNECT or Upgrade request was answered without a switch: parse what it held back
            _resumeRequests = false;
            other.ResumeAfterUpgrade(h.Header.TimestampNs, this);
        }
        // both parsers: an event on one side can end the other's wait (upgrade, CONNECT, HTTP/2)
        var skipped = parser.SkippedBytes - parserSkipped + other.SkippedBytes - otherSkipped;
        if (skipped != 0)
        {
            // bytes skipped while resynchronizing may have held whole messages
            if (parser.SkippedBytes != parserSkipped) stream.LossNs = _eventNs;
            if (other.SkippedBytes != otherSkipped) Own(other).LossNs = _eventNs;
            _table.Metrics.ResyncSkippedBytes.Add(skipped);
        }
        var opaqueNow = parser.OpaqueBytes + other.OpaqueBytes;
        if (opaqueNow != opaque) _table.Metrics.OpaqueBytes.Add(opaqueNow - opaque);
        UpdateRetained();
    }

    /// <summary>The connection is finished. closed: its fd was closed (close, process exit, fd
    /// reused), which completes a close-delimited body; otherwise it is forgotten (idle, evicted,
    /// shutdown) and what is in progress is cut. Requests left without a response are counted.</summary>
    public void Finish(ulong nowNs, string reason)
    {
        var closed = reason is "close" or "process_exit" or "fd_reused";
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
            _table.Metrics.CountHttpDrop(r.IsLost ? DropLabels.Request(r.LostReason!)
                : e.Unanswerable ? "response_lost"
                : DropLabels.WithoutResponse(reason));
            r.Dispose();
            e.Response?.Dispose();
        }
        UpdateRetained();
    }

    /// <summary>Memory shed: every byte held is dropped. The messages involved are marked lost
    /// (counted when their exchange completes) but keep their place, and parsers inside a body
    /// stay in step, so pairing survives. Returns the bytes freed.</summary>
    public long Shed()
    {
        var before = Retained;
        _egress.Parser.Shed(this);
        _ingress.Parser.Shed(this);
        for (var i = 0; i < _count; i++)
        {
            ref var e = ref At(i);
            e.Request.MarkLost("shed");
            e.Response?.MarkLost("shed");
        }
        UpdateRetained();
        return before - Retained;
    }

    private void ResetStreams(string reason)
    {
        var lost = _count + (_egress.Parser.Current is null ? 0 : 1) + (_ingress.Parser.Current is null ? 0 : 1);
        if (lost > 0) _table.Metrics.CountHttpDrop(reason);
        _egress.Dispose();
        _ingress.Dispose();
        while (_count > 0)
        {
            var e = Pop();
            e.Request.Dispose();
            e.Response?.Dispose();
        }
        _egress = new DirectionStream(StreamDirection.Egress, _limits);
        _ingress = new DirectionStream(StreamDirection.Ingress, _limits);
        _lossSeen = _timeChecks = _sequential = _pipelined = _abandoned = _resumeRequests = false;
        _paired = 0;
    }

    private void UpdateRetained()
    {
        long r = _egress.Parser.CarryBytes + _ingress.Parser.CarryBytes;
        if (_egress.Parser.Current is { Queued: false } ec) r += ec.RetainedBytes;
        if (_ingress.Parser.Current is { Queued: false } ic) r += ic.RetainedBytes;
        for (var i = 0; i < _count; i++)
        {
            ref var e = ref At(i);
            r += e.Request.RetainedBytes + (e.Response?.RetainedBytes ?? 0);
        }
        if (r != Retained)
        {
            _table.AdjustRetained(r - Retained);
            Retained = r;
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
                _table.Metrics.CountHttpDrop(lost.Request.IsLost ? DropLabels.Request(lost.Request.LostReason!) : "response_lost");
                lost.Request.Dispose();
                continue;
            }
            if (head.Response is null) return;
            var e = Pop();
            if (e.Request.IsLost || e.Response!.IsLost)
            {
                _table.Metrics.CountHttpDrop(e.Request.IsLost ? DropLabels.Request(e.Request.LostReason!) : DropLabels.Response(e.Response!.LostReason!));
                e.Request.Dispose();
                e.Response!.Dispose();
                continue;
            }
            CountCut(e.Request);
            CountCut(e.Response);
            var requestDirection = _ingress.Parser.Role == StreamRole.Requests ? StreamDirection.Ingress
                : _egress.Parser.Role == StreamRole.Requests ? StreamDirection.Egress
                : StreamDirection.Ingress;
            _table.Emit(HttpExchange.Rent(Id, Info, requestDirection == StreamDirection.Ingress ? 1 : 2, Source,
                e.Request, e.Response!, _table.Metrics));
        }
    }

    /// <summary>Bodies emitted with a part missing (the output marks them in the headers).</summary>
    private void CountCut(HttpMessage m)
    {
        if (m.BodyTruncated) _table.Metrics.BodiesCut["cap"].Increment();
        if (m.BodyHasGap) _table.Metrics.BodiesCut["gap"].Increment();
        if (m.Incomplete) _table.Metrics.BodiesCut["incomplete"].Increment();
    }

    /// <summary>Gives up pairing (a pipelined connection lost messages): what is waiting is
    /// counted as it completes, and so is everything after.</summary>
    private void Abandon()
    {
        if (_abandoned) return;
        _abandoned = true;
        _table.Metrics.CountHttpDrop("pipelined_pairing_lost");
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
            _table.Metrics.CountHttpDrop("too_many_pending_requests");
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
            _table.Metrics.CountHttpDrop("interim_response"); // 100 Continue, 103 Early Hints: not the answer
            message.Dispose();
            return;
        }
        if (message.StatusCode == 101 && !requests.Parser.IsOpaque)
        {
            // Switching Protocols: neither direction is HTTP/1.x from here on
            _table.Metrics.CountHttpDrop("connection_upgraded");
            requests.Parser.BecomeOpaque(this);
        }
        if (_abandoned)
        {
            _table.Metrics.CountHttpDrop(DropLabels.Response("pairing_lost"));
            message.Dispose();
            return;
        }
        Pair(message, requests.Parser);
        Flush();
    }

    private void OnRequestEnd(HttpMessage request)
    {
        if (!request.Queued)
        {
            if (_abandoned || request.LostReason == "pairing_lost")
            {
                _table.Metrics.CountHttpDrop(DropLabels.Request("pairing_lost"));
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
            _table.Metrics.CountHttpDrop("response_without_request");
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
            _table.Metrics.CountHttpDrop("connect_tunnel");
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
        _table.Metrics.CountHttpDrop(DropLabels.SyncLost(reason));
        Own(from).LossNs = _eventNs;
        NoteLoss();
    }

    void IHttpMessageSink.OnMalformed(HttpStreamParser from, string reason) =>
        _table.Metrics.CountHttpDrop(DropLabels.Malformed(reason));

    void IHttpMessageSink.OnOpaque(HttpStreamParser from, string reason)
    {
        _table.Metrics.CountHttpDrop("opaque_" + reason);
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
        _table.AdjustRetained(-Retained);
        Retained = 0;
    }
}

/// <summary>Metric labels of HttpDrops, made once (a bounded set: the parser's reasons are constants).</summary>
internal static class DropLabels
{
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<(string, string), string> Cache = new();

    private static string Label(string prefix, string reason) =>
        Cache.TryGetValue((prefix, reason), out var s) ? s : Cache.GetOrAdd((prefix, reason), k => k.Item1 + k.Item2);

    public static string Request(string reason) => Label("request_", reason);
    public static string Response(string reason) => Label("response_", reason);
    public static string SyncLost(string reason) => Label("sync_lost_", reason);
    public static string Malformed(string reason) => Label("malformed_", reason);

    public static string WithoutResponse(string endReason) =>
        endReason == "close" ? "request_without_response" : Label("request_without_response_", endReason);
}
