using System.Net;
using Collector.Events;
using Collector.Http;

namespace Collector.Connections;

/// <summary>(tgid, fd, generation): the kernel changes the generation when an fd number is reused,
/// so two connections never merge.</summary>
public readonly record struct ConnectionId(uint Tgid, uint Fd, uint Generation);

/// <summary>What the kernel told us about a connection when it first saw it.</summary>
public sealed record ConnectionInfo(
    IPAddress LocalAddress, int LocalPort, IPAddress RemoteAddress, int RemotePort,
    ConnectionOrigin Origin, string ProcessName);

/// <summary>A request paired with its response, ready for filtering and output.</summary>
public sealed class HttpExchange : IDisposable
{
    public required ConnectionId Connection { get; init; }
    public required ConnectionInfo? Info { get; init; }
    /// <summary>1: the traced process is the server (inbound); 2: it is the client (outbound).</summary>
    public required int Direction { get; init; }
    public required EventSource Source { get; init; }
    public required HttpMessage Request { get; init; }
    public required HttpMessage Response { get; init; }

    public void Dispose()
    {
        Request.Dispose();
        Response.Dispose();
    }
}

/// <summary>One traced connection: its two byte streams, their parsers, and the requests waiting
/// for their responses (FIFO: HTTP/1.1 pipelining answers in order).</summary>
internal sealed class Connection : IHttpMessageSink, IDisposable
{
    private const int MaxPendingRequests = 128;

    private readonly ConnectionTable _table;
    private readonly HttpLimits _limits;
    private readonly Queue<HttpMessage> _pending = new();
    // A server may answer before it has read the whole request (an early error, or a body it
    // discards): such a response waits here for its request to finish.
    private HttpMessage? _earlyResponse;
    private DirectionStream _egress;
    private DirectionStream _ingress;
    private bool _responseGap;

    public Connection(ConnectionTable table, ConnectionId id, HttpLimits limits)
    {
        _table = table;
        _limits = limits;
        Id = id;
        _egress = new DirectionStream(limits);
        _ingress = new DirectionStream(limits);
    }

    public ConnectionId Id { get; }
    public ConnectionInfo? Info { get; set; }
    /// <summary>The streams carry TLS plaintext from a library probe, not syscall bytes.</summary>
    public bool Tls { get; private set; }
    public EventSource Source { get; private set; }
    public long LastActivity { get; set; }
    public LinkedListNode<Connection>? LruNode { get; set; }
    /// <summary>Bytes this connection holds (pipes, bodies in progress, waiting requests).</summary>
    public long Retained { get; private set; }

    public string? PendingRequestMethod => _pending.TryPeek(out var r) ? r.Method : null;

    private DirectionStream Stream(StreamDirection d) => d == StreamDirection.Egress ? _egress : _ingress;
    private DirectionStream Other(HttpStreamParser p) => ReferenceEquals(p, _egress.Parser) ? _ingress : _egress;

    public void OnData(in DataEventHeader h, ReadOnlySpan<byte> payload)
    {
        var tls = h.Source != EventSource.Syscall;
        if (tls && !Tls)
        {
            // First plaintext from a TLS library: whatever the syscalls showed was not the
            // application's bytes. Start both streams afresh at plaintext position 0.
            Tls = true;
            DropStreams("tls_switch");
        }
        else if (!tls && Tls)
        {
            return; // ciphertext of a TLS connection: never parsed (the kernel normally withholds it)
        }
        Source = h.Source;
        var stream = Stream(h.Direction);
        var position = h.Position;
        if (position < stream.NextPosition)
        {
            // overlap with what we already have: keep only the new tail
            var overlap = stream.NextPosition - position;
            if (overlap >= (ulong)payload.Length) return;
            payload = payload[(int)overlap..];
            position = stream.NextPosition;
        }
        if (position > stream.NextPosition)
        {
            var gap = (long)(position - stream.NextPosition);
            _table.Metrics.GapBytes.Add(gap);
            stream.Process(h.Header.TimestampNs, this); // parse what came before the hole
            if (!stream.Parser.OnGap(gap, this))
            {
                _table.Metrics.CountHttpDrop("gap_lost_message");
                var dropped = stream.Discard();
                if (stream.Parser.Role == StreamRole.Responses) _responseGap = true;
                _ = dropped;
            }
            else
            {
                stream.Parser.CompleteIfBodyDone(h.Header.TimestampNs, this);
            }
        }
        stream.NextPosition = position + (ulong)payload.Length;
        if (stream.Parser.IsOpaque)
        {
            _table.Metrics.OpaqueBytes.Add(payload.Length);
        }
        else
        {
            stream.Write(payload);
            stream.Process(h.Header.TimestampNs, this);
        }
        UpdateRetained();
    }

    /// <summary>The connection is finished (close, process exit, idle, evicted): complete what
    /// the close completes and count what stays unanswered.</summary>
    public void Finish(ulong nowNs, string reason)
    {
        _ingress.Parser.OnClose(nowNs, this);
        _egress.Parser.OnClose(nowNs, this);
        while (_pending.TryDequeue(out var r))
        {
            _table.Metrics.CountHttpDrop(reason == "close" ? "request_without_response" : $"request_without_response_{reason}");
            r.Dispose();
        }
        if (_earlyResponse is not null)
        {
            _table.Metrics.CountHttpDrop("response_without_request");
            _earlyResponse.Dispose();
            _earlyResponse = null;
        }
        UpdateRetained();
    }

    /// <summary>Memory shed: drops everything buffered and in progress; returns the bytes freed.</summary>
    public long Shed()
    {
        var before = Retained;
        DropStreams(null);
        while (_pending.TryDequeue(out var r)) r.Dispose();
        UpdateRetained();
        return before;
    }

    private void DropStreams(string? reason)
    {
        var lost = _egress.Buffered + _ingress.Buffered;
        if (reason is not null && lost > 0) _table.Metrics.CountHttpDrop(reason);
        var egressPos = _egress.NextPosition;
        var ingressPos = _ingress.NextPosition;
        var egressRole = _egress.Parser.Role;
        var ingressRole = _ingress.Parser.Role;
        _egress.Dispose();
        _ingress.Dispose();
        _egress = new DirectionStream(_limits);
        _ingress = new DirectionStream(_limits);
        if (reason is null)
        {
            // shed: stay in step with the kernel's positions and resume at the next message
            _egress.NextPosition = egressPos;
            _ingress.NextPosition = ingressPos;
            _egress.Parser.Role = egressRole;
            _ingress.Parser.Role = ingressRole;
            _egress.Parser.Reset();
            _ingress.Parser.Reset();
        }
    }

    private void UpdateRetained()
    {
        long r = _egress.Buffered + _ingress.Buffered + _egress.Parser.RetainedBytes + _ingress.Parser.RetainedBytes;
        foreach (var m in _pending) r += m.RetainedBytes;
        _table.AdjustRetained(r - Retained);
        Retained = r;
    }

    void IHttpMessageSink.OnMessage(HttpStreamParser from, HttpMessage message)
    {
        var other = Other(from);
        if (message.IsRequest)
        {
            if (other.Parser.Role == StreamRole.Unknown) other.Parser.Role = StreamRole.Responses;
            if (_pending.Count >= MaxPendingRequests)
            {
                _pending.Dequeue().Dispose();
                _table.Metrics.CountHttpDrop("too_many_pending_requests");
            }
            _pending.Enqueue(message);
            if (_earlyResponse is { } early && _pending.Count == 1)
            {
                _earlyResponse = null;
                ((IHttpMessageSink)this).OnMessage(other.Parser, early);
            }
            return;
        }
        if (other.Parser.Role == StreamRole.Unknown) other.Parser.Role = StreamRole.Requests;
        if (_pending.Count == 0 && other.Parser.InMessage && _earlyResponse is null)
        {
            _earlyResponse = message;
            return;
        }

        // A response never starts before its request: a head request that started later than this
        // response lost its own response to a gap, or this response's request was lost.
        while (_pending.TryPeek(out var head) && _responseGap && _pending.Count > 1 &&
               _pending.ElementAt(1).FirstByteNs < message.FirstByteNs && !head.Incomplete)
        {
            _pending.Dequeue().Dispose();
            _table.Metrics.CountHttpDrop("request_response_lost_in_gap");
        }
        _responseGap = false;
        if (!_pending.TryPeek(out var request) || request.FirstByteNs > message.FirstByteNs)
        {
            _table.Metrics.CountHttpDrop("response_without_request");
            message.Dispose();
            return;
        }
        _pending.Dequeue();
        var switched = message.StatusCode == 101 || (request.Method == "CONNECT" && message.StatusCode is >= 200 and < 300);
        if (request.Method == "CONNECT" || message.StatusCode == 101 || other.Parser.IsOpaque == false && switched)
        {
            if (switched)
            {
                other.Parser.BecomeOpaque();
                var freed = other.Discard();
                _table.Metrics.OpaqueBytes.Add(freed);
                _table.Metrics.CountHttpDrop("upgraded_connection");
            }
        }
        if (!switched)
        {
            other.Parser.ResumeAfterUpgrade();
        }
        var requestDirection = ReferenceEquals(other, _ingress) ? StreamDirection.Ingress : StreamDirection.Egress;
        _table.Emit(new HttpExchange
        {
            Connection = Id,
            Info = Info,
            Direction = requestDirection == StreamDirection.Ingress ? 1 : 2,
            Source = Source,
            Request = request,
            Response = message,
        });
        if (!switched && other.HasBufferedBytes)
            other.Process(message.LastByteNs, this); // pipelined bytes held back by an Upgrade request
    }

    void IHttpMessageSink.OnInterim(HttpStreamParser from, HttpMessage message)
    {
        _table.Metrics.CountHttpDrop("interim_response_skipped");
        message.Dispose();
    }

    void IHttpMessageSink.OnMalformed(HttpStreamParser from, string reason)
    {
        _table.Metrics.CountHttpDrop("malformed_" + reason.Replace(' ', '_').Replace("-", "_"));
    }

    public void Dispose()
    {
        _earlyResponse?.Dispose();
        _earlyResponse = null;
        _egress.Dispose();
        _ingress.Dispose();
        while (_pending.TryDequeue(out var r)) r.Dispose();
        _table.AdjustRetained(-Retained);
        Retained = 0;
    }
}
