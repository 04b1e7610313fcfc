using Collector.Events;
using Collector.Http;
using Collector.Http2;
using Collector.Metrics;

namespace Collector.Connections;

/// <summary>One traced connection: the transport under its protocol session. It keeps each
/// direction's kernel byte position (overlaps trimmed, holes measured exactly), follows TLS
/// plaintext sessions on the socket, and accounts for the memory its session holds.
///
/// The protocol is chosen once, from the first bytes (ProtocolDetector): the HTTP/2 client preface
/// or a server's first SETTINGS frame, an HTTP/2 frame on a connection joined mid-stream, else
/// HTTP/1.x. An HTTP/1 session can hand the connection to HTTP/2 (an h2c upgrade).</summary>
internal sealed class Connection : ISessionHost, IDisposable
{
    private readonly ConnectionTable _table;
    private readonly ulong[] _nextPosition = new ulong[2];
    private IProtocolSession? _session;
    private IProtocolSession? _switchTo;
    private long _holeBeforeFirstBytes; // bytes missing before the first ones seen (both directions)
    private byte[]? _early;             // a joined connection's first bytes, too few to judge
    private int _earlyLength;
    private StreamDirection _earlyDirection;

    public Connection(ConnectionTable table, ConnectionId id, HttpLimits limits)
    {
        _table = table;
        Limits = limits;
        Id = id;
    }

    public ConnectionId Id { get; }
    public HttpLimits Limits { get; }
    public CollectorMetrics Metrics => _table.Metrics;
    public ConnectionInfo? Info { get; private set; }
    /// <summary>The streams carry TLS plaintext from a library probe, not syscall bytes.</summary>
    public bool Tls { get; private set; }
    private ulong _tlsSession; // the TLS session (SSL *) whose plaintext the streams hold
    public EventSource Source { get; private set; }
    /// <summary>Environment.TickCount64 of the last event.</summary>
    public long LastActivity { get; set; }
    public LinkedListNode<Connection>? LruNode { get; set; }
    /// <summary>Bytes this connection holds (its session's messages, streams and carried bytes).</summary>
    public long Retained { get; private set; }
    internal IProtocolSession? Session => _session;
    /// <summary>A connection that existed before the collector, or whose bytes before the capture
    /// start were left out: its first bytes may be mid-message.</summary>
    private bool Joined => _joinedAtCaptureStart || Info?.Origin == ConnectionOrigin.Unknown;
    private bool _joinedAtCaptureStart;

    /// <summary>Bytes of this connection went by before the capture start (see RingBufferReader.CaptureFrom).</summary>
    public void JoinAtCaptureStart()
    {
        if (_session is null) _joinedAtCaptureStart = true;
    }

    public void SetInfo(ConnectionInfo info) => Info = info;

    public void OnData(in DataEventHeader h, ReadOnlySpan<byte> payload)
    {
        var tls = h.Source != EventSource.Syscall;
        if (tls && !Tls)
        {
            // First plaintext from a TLS library: whatever the syscalls showed was not the
            // application's bytes. Start both streams afresh at plaintext position 0.
            Tls = true;
            ResetSession("tls_switch");
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
            if (_tlsSession != 0) ResetSession("tls_session_switch");
            _tlsSession = h.TlsCtx;
        }
        Source = h.Source;
        var direction = h.Direction;
        ref var next = ref _nextPosition[(int)direction & 1];
        var position = h.Position;
        if (position < next)
        {
            // overlap with what we already have: keep only the new tail
            var overlap = next - position;
            if (overlap >= (ulong)payload.Length) return;
            payload = payload[(int)overlap..];
            position = next;
        }
        var ns = h.Header.TimestampNs;
        if (position > next)
        {
            var gap = (long)(position - next);
            _table.Metrics.GapBytes.Add(gap);
            if (_session is not null) _session.OnGap(direction, gap, ns);
            else
            {
                _holeBeforeFirstBytes += gap;
                if (_earlyLength > 0 && _earlyDirection == direction)
                {
                    // held bytes and what follows the hole are not one piece: the held ones go
                    _table.Metrics.ResyncSkippedBytes.Add(_earlyLength);
                    _earlyLength = 0;
                }
            }
        }
        next = position + (ulong)payload.Length;
        if (_session is null)
        {
            var midStream = Joined || _holeBeforeFirstBytes > 0;
            if (midStream && _earlyLength + payload.Length < Http2Frame.HeaderSize && (_earlyLength == 0 || _earlyDirection == direction))
            {
                // too few bytes to tell a frame header from the middle of a message: held (at
                // most 8 bytes) until the next event of this direction
                _early ??= new byte[Http2Frame.HeaderSize];
                payload.CopyTo(_early.AsSpan(_earlyLength));
                _earlyLength += payload.Length;
                _earlyDirection = direction;
                return;
            }
            if (_earlyLength > 0 && _earlyDirection == direction)
            {
                // the held bytes and this event's, judged together (and fed in one piece)
                var whole = new byte[_earlyLength + payload.Length];
                _early.AsSpan(0, _earlyLength).CopyTo(whole);
                payload.CopyTo(whole.AsSpan(_earlyLength));
                _earlyLength = 0;
                payload = whole;
            }
            // the first bytes after a hole may be mid-frame as well as mid-message
            _session = ProtocolDetector.Choose(this, direction, payload, Joined, midStream);
            if (_holeBeforeFirstBytes > 0 && _session is Http1Session) _session.OnGap(direction, _holeBeforeFirstBytes, ns);
            if (_earlyLength > 0)
            {
                _session.OnData(_earlyDirection, _early.AsSpan(0, _earlyLength), ns); // the other direction's held bytes
                _earlyLength = 0;
            }
        }
        _session.OnData(direction, payload, ns);
        if (_switchTo is not null)
        {
            _session.Dispose();
            _session = _switchTo;
            _switchTo = null;
        }
        UpdateRetained();
    }

    /// <summary>The connection is finished. closed: its fd was closed (close, process exit, fd
    /// reused), which completes a close-delimited body; otherwise it is forgotten (idle, evicted,
    /// shutdown) and what is in progress is cut. What is left is counted.</summary>
    public void Finish(ulong nowNs, string reason)
    {
        var closed = reason is "close" or "process_exit" or "fd_reused";
        _session?.Finish(closed, nowNs, reason);
        UpdateRetained();
    }

    /// <summary>Memory shed: every byte held is dropped. Returns the bytes freed.</summary>
    public long Shed()
    {
        var before = Retained;
        _session?.Shed();
        UpdateRetained();
        return before - Retained;
    }

    private void ResetSession(string reason)
    {
        if (_session is { HasMessagesInProgress: true })
            _table.Metrics.CountHttpDrop(reason);
        _session?.Dispose();
        _session = null;
        _nextPosition[0] = _nextPosition[1] = 0;
        _holeBeforeFirstBytes = 0;
        _earlyLength = 0;
    }

    private void UpdateRetained()
    {
        var r = _session?.Retained ?? 0;
        if (r != Retained)
        {
            _table.AdjustRetained(r - Retained);
            Retained = r;
        }
    }

    // ---- ISessionHost ----

    void ISessionHost.Emit(HttpMessage request, HttpMessage response, int direction)
    {
        var metrics = _table.Metrics;
        if (request.IsLost || response.IsLost)
        {
            // placeholders that kept their place in pairing: counted here, never sent
            metrics.CountHttpDrop(request.IsLost ? DropLabels.Request(request.LostReason!) : DropLabels.Response(response.LostReason!));
            request.Dispose();
            response.Dispose();
            return;
        }
        CountCut(metrics, request);
        CountCut(metrics, response);
        _table.Emit(HttpExchange.Rent(Id, Info, direction, Source, request, response, metrics));
    }

    /// <summary>Bodies sent with a part missing (the output marks them in the headers).</summary>
    private static void CountCut(CollectorMetrics metrics, HttpMessage m)
    {
        if (m.BodyTruncated) metrics.BodiesCut["cap"].Increment();
        if (m.BodyHasGap) metrics.BodiesCut["gap"].Increment();
        if (m.Incomplete) metrics.BodiesCut["incomplete"].Increment();
    }

    void ISessionHost.CountDrop(string reason) => _table.Metrics.CountHttpDrop(reason);

    void ISessionHost.SwitchTo(IProtocolSession next)
    {
        _switchTo?.Dispose(); // a switch decided earlier in the same event is superseded
        _switchTo = next;
    }

    public void Dispose()
    {
        _session?.Dispose();
        _session = null;
        _switchTo?.Dispose();
        _switchTo = null;
        _table.AdjustRetained(-Retained);
        Retained = 0;
    }
}
