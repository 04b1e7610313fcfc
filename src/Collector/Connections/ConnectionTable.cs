using System.Diagnostics;
using System.Net;
using Collector.Events;
using Collector.Http;
using Collector.Metrics;

namespace Collector.Connections;

/// <summary>Bounds of user-space reassembly (configuration.md: TRAFFIC_*).</summary>
public sealed record ReassemblyLimits(
    TimeSpan Inactivity, int MaxConnections, long BufferBudgetBytes, HttpLimits Http);

/// <summary>Every connection being reassembled, keyed by (tgid, fd). Single-threaded: only the
/// event reader's thread calls it. Keeps connections in least-recently-active order so that idle
/// ones are flushed, the table stays under TRAFFIC_MAX_ACTIVE_CONN, and memory is shed oldest first.</summary>
public sealed class ConnectionTable : IKernelEventHandler, IDisposable
{
    private readonly Dictionary<(uint Tgid, uint Fd), Connection> _connections = new();
    private readonly LinkedList<Connection> _lru = new();
    private readonly ReassemblyLimits _limits;
    private readonly Action<HttpExchange> _emit;
    private readonly Counter _inbound, _outbound;
    private long _retained;

    public ConnectionTable(ReassemblyLimits limits, CollectorMetrics metrics, Action<HttpExchange> emit)
    {
        _limits = limits;
        Metrics = metrics;
        _emit = emit;
        _inbound = metrics.ExchangesEmitted["inbound"];
        _outbound = metrics.ExchangesEmitted["outbound"];
        Interlocked.Exchange(ref metrics.BufferBudgetBytes, limits.BufferBudgetBytes);
    }

    public CollectorMetrics Metrics { get; }
    public int Count => _connections.Count;
    /// <summary>Bytes held in reassembly: carried lines, messages in progress, requests waiting.</summary>
    public long RetainedBytes => _retained;

    /// <summary>Hidden debug option (CAPTURE_DUMP_PATH): every event is also written here.</summary>
    public CaptureDump? Dump { get; set; }

    public unsafe void OnOpen(in OpenEvent e)
    {
        Dump?.Open(e);
        var id = new ConnectionId(e.Header.Tgid, e.Header.Fd, e.Header.Generation);
        var conn = GetOrCreate(id);
        if (conn is null) return;
        fixed (byte* local = e.LocalAddr)
        fixed (byte* remote = e.RemoteAddr)
        fixed (byte* comm = e.Comm)
        {
            var name = CString(new ReadOnlySpan<byte>(comm, EventLayout.CommLength));
            conn.SetInfo(new ConnectionInfo(
                Address(e.Family, new ReadOnlySpan<byte>(local, 16)), e.LocalPort,
                Address(e.Family, new ReadOnlySpan<byte>(remote, 16)), e.RemotePort,
                e.Origin, name));
        }
    }

    public void OnData(in DataEventHeader h, ReadOnlySpan<byte> payload)
    {
        Dump?.Data(h, payload);
        if (h.Header.Fd == EventLayout.UnboundFd)
        {
            HoldUnbound(h, payload);
            return;
        }
        var id = new ConnectionId(h.Header.Tgid, h.Header.Fd, h.Header.Generation);
        var conn = GetOrCreate(id);
        if (conn is null)
        {
            Metrics.CountHttpDrop("stale_generation_event");
            return;
        }
        conn.OnData(h, payload);
        if (_retained > _limits.BufferBudgetBytes) EnforceBudget(conn);
    }

    public void OnDataBeforeCapture(in DataEventHeader h)
    {
        if (h.Header.Fd == EventLayout.UnboundFd) return;
        GetOrCreate(new ConnectionId(h.Header.Tgid, h.Header.Fd, h.Header.Generation))?.JoinAtCaptureStart();
    }

    public void OnClose(in CloseEvent e)
    {
        Dump?.Close(e);
        if ((e.Flags & EventLayout.CloseTls) != 0 && (e.Flags & EventLayout.CloseTlsPlaintext) == 0)
        {
            // TLS whose plaintext no probe saw (a library we do not probe, or one that bypasses
            // its exported functions): count it, with its encrypted size
            Metrics.TlsConnectionsUnseen.Increment();
            Metrics.TlsUnseenBytes.Add((long)(e.EgressBytes + e.IngressBytes));
        }
        var key = (e.Header.Tgid, e.Header.Fd);
        if (_connections.TryGetValue(key, out var conn) && conn.Id.Generation == e.Header.Generation)
            End(conn, e.Header.TimestampNs, "close");
    }

    // ---- TLS plaintext that arrived before its socket was known (memory-BIO applications) ----

    private sealed class UnboundTls
    {
        public readonly List<(DataEventHeader Header, byte[] Data, int Length)> Events = new();
        public long Bytes;
        public long Since = Stopwatch.GetTimestamp();
    }

    private const int MaxUnboundSessions = 1024;
    private const long MaxUnboundBytesPerSession = 4 * 1024 * 1024;
    private readonly Dictionary<(uint Tgid, ulong Ctx), UnboundTls> _unbound = new();

    private void HoldUnbound(in DataEventHeader h, ReadOnlySpan<byte> payload)
    {
        var key = (h.Header.Tgid, h.TlsCtx);
        if (!_unbound.TryGetValue(key, out var u))
        {
            if (_unbound.Count >= MaxUnboundSessions)
            {
                Metrics.CountHttpDrop("tls_unbound_sessions_full");
                Metrics.TlsUnboundDroppedBytes.Add(payload.Length);
                return;
            }
            _unbound[key] = u = new UnboundTls();
        }
        if (u.Bytes + payload.Length > MaxUnboundBytesPerSession)
        {
            Metrics.CountHttpDrop("tls_unbound_session_too_large");
            Metrics.TlsUnboundDroppedBytes.Add(payload.Length);
            return;
        }
        var copy = System.Buffers.ArrayPool<byte>.Shared.Rent(Math.Max(payload.Length, 1));
        payload.CopyTo(copy);
        u.Events.Add((h, copy, payload.Length));
        u.Bytes += payload.Length;
        u.Since = Stopwatch.GetTimestamp(); // idle from the last byte held, not the first
        AdjustRetained(payload.Length);
    }

    public void OnBind(in BindEvent e)
    {
        if (!_unbound.Remove((e.Header.Tgid, e.TlsCtx), out var u)) return;
        AdjustRetained(-u.Bytes);
        foreach (var (header, data, length) in u.Events)
        {
            var h = header;
            h.Header.Fd = e.Header.Fd;
            h.Header.Generation = e.Header.Generation;
            try
            {
                OnData(h, data.AsSpan(0, length));
            }
            finally
            {
                System.Buffers.ArrayPool<byte>.Shared.Return(data);
            }
        }
    }

    private void ExpireUnbound(long now, long idleTicks)
    {
        List<(uint, ulong)>? expired = null;
        foreach (var (key, u) in _unbound)
            if (now - u.Since > idleTicks) (expired ??= new()).Add(key);
        if (expired is null) return;
        foreach (var key in expired)
        {
            var u = _unbound[key];
            _unbound.Remove(key);
            AdjustRetained(-u.Bytes);
            Metrics.CountHttpDrop("tls_unbound_expired");
            Metrics.TlsUnboundDroppedBytes.Add(u.Bytes);
            foreach (var (_, data, _) in u.Events) System.Buffers.ArrayPool<byte>.Shared.Return(data);
        }
    }

    /// <summary>Deletes the kernel's entry for (tgid, fd) once the process has ended.</summary>
    public Action<uint, uint>? ForgetKernelConnection { get; set; }

    /// <summary>Told of every exec (the TLS probes look for libraries in the new process).</summary>
    public Action<uint>? ExecObserver { get; set; }

    public void OnExec(uint tgid) => ExecObserver?.Invoke(tgid);

    public void OnExit(uint tgid, ulong timestampNs)
    {
        Dump?.Exit(tgid, timestampNs);
        List<Connection>? ended = null;
        foreach (var c in _lru)
            if (c.Id.Tgid == tgid) (ended ??= new()).Add(c);
        if (ended is null) return;
        foreach (var c in ended)
        {
            End(c, timestampNs, "process_exit");
            // the kernel closed these fds without close(): its entries would linger until evicted
            ForgetKernelConnection?.Invoke(c.Id.Tgid, c.Id.Fd);
        }
    }

    /// <summary>Flushes connections idle longer than the inactivity threshold.</summary>
    public void Sweep()
    {
        Sweep(Environment.TickCount64);
        Dump?.Flush();
    }

    /// <summary>Sweep as if the clock read nowMs (Environment.TickCount64): tests drive time with it.</summary>
    public void Sweep(long nowMs)
    {
        var idleMs = (long)_limits.Inactivity.TotalMilliseconds;
        while (_lru.First is { } node && nowMs - node.Value.LastActivity > idleMs)
            End(node.Value, MonotonicNowNs(), "idle");
        if (_unbound.Count > 0)
            ExpireUnbound(Stopwatch.GetTimestamp(), (long)(_limits.Inactivity.TotalSeconds * Stopwatch.Frequency));
    }

    /// <summary>Ends every connection: shutdown emits what is complete.</summary>
    public void EndAll(string reason)
    {
        while (_lru.First is { } node) End(node.Value, MonotonicNowNs(), reason);
        Dump?.Flush();
    }

    internal void Emit(HttpExchange exchange)
    {
        (exchange.Direction == 1 ? _inbound : _outbound).Increment();
        _emit(exchange);
    }

    internal void AdjustRetained(long delta)
    {
        _retained += delta;
        Interlocked.Exchange(ref Metrics.BufferedBytes, _retained);
    }

    private Connection? GetOrCreate(ConnectionId id)
    {
        var key = (id.Tgid, id.Fd);
        if (_connections.TryGetValue(key, out var conn))
        {
            if (conn.Id.Generation == id.Generation)
            {
                Touch(conn);
                return conn;
            }
            if (id.Generation < conn.Id.Generation)
                return null; // a late event of the connection this fd carried before: it has ended
            // The fd number was reused: the old connection was closed even if its close was not seen.
            End(conn, MonotonicNowNs(), "fd_reused");
        }
        if (_connections.Count >= _limits.MaxConnections && _lru.First is { } oldest)
            End(oldest.Value, MonotonicNowNs(), "evicted_max_connections"); // the least recently active makes room
        conn = new Connection(this, id, _limits.Http);
        _connections[key] = conn;
        conn.LruNode = _lru.AddLast(conn);
        conn.LastActivity = Environment.TickCount64; // a coarse clock: idle thresholds are seconds
        Interlocked.Exchange(ref Metrics.ConnectionsTracked, _connections.Count);
        return conn;
    }

    private void Touch(Connection conn)
    {
        conn.LastActivity = Environment.TickCount64; // a coarse clock: idle thresholds are seconds
        if (conn.LruNode is { } node && node != _lru.Last)
        {
            _lru.Remove(node);
            _lru.AddLast(node);
        }
    }

    private void End(Connection conn, ulong nowNs, string reason)
    {
        conn.Finish(nowNs, reason);
        Metrics.ConnectionsEnded[reason].Increment();
        _connections.Remove((conn.Id.Tgid, conn.Id.Fd));
        if (conn.LruNode is { } node) _lru.Remove(node);
        conn.LruNode = null;
        conn.Dispose();
        Interlocked.Exchange(ref Metrics.ConnectionsTracked, _connections.Count);
    }

    /// <summary>Keeps all buffered, unpaired bytes under TRAFFIC_BUFFER_THRESHOLD, as bytes arrive:
    /// the least recently active connections' bytes are shed first (the one just written to goes
    /// last), down to 7/8 of the budget so that shedding is not paid again on the next event.</summary>
    private void EnforceBudget(Connection current)
    {
        var budget = _limits.BufferBudgetBytes;
        var target = budget - budget / 8;
        if (_unbound.Count > 0)
        {
            // TLS plaintext still waiting for its socket goes first: the least certain to be used
            ExpireUnbound(long.MaxValue, 0);
            if (_retained <= target) return;
        }
        var node = _lru.First;
        while (_retained > target && node is not null)
        {
            var next = node.Next;
            if (node.Value.Retained > 0 && node.Value != current)
                Metrics.ShedBytes.Add(node.Value.Shed());
            node = next;
        }
        if (_retained > budget)
            Metrics.ShedBytes.Add(current.Shed());
    }

    internal static ulong MonotonicNowNs() => (ulong)Stopwatch.GetTimestamp() * (1_000_000_000UL / (ulong)Stopwatch.Frequency);

    private static IPAddress Address(ushort family, ReadOnlySpan<byte> bytes)
    {
        if (family == 2) return new IPAddress(bytes[..4]);
        var v6 = new IPAddress(bytes);
        return v6.IsIPv4MappedToIPv6 ? v6.MapToIPv4() : v6;
    }

    private static string CString(ReadOnlySpan<byte> s)
    {
        var end = s.IndexOf((byte)0);
        return System.Text.Encoding.UTF8.GetString(end < 0 ? s : s[..end]);
    }


    public void Dispose()
    {
        EndAll("shutdown");
        Dump?.Dispose();
    }
}

/// <summary>What the ring-buffer reader hands each decoded event to.</summary>
public interface IKernelEventHandler
{
    void OnOpen(in OpenEvent e);
    void OnData(in DataEventHeader h, ReadOnlySpan<byte> payload);
    /// <summary>A data event left out because it came before the capture start.</summary>
    void OnDataBeforeCapture(in DataEventHeader h);
    void OnClose(in CloseEvent e);
    void OnExec(uint tgid);
    void OnExit(uint tgid, ulong timestampNs);
    void OnBind(in BindEvent e);
}
