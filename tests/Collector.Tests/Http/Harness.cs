using System.Buffers;
using System.Text;
using System.Text.Json;
using Collector.Connections;
using Collector.Events;
using Collector.Http;
using Collector.Metrics;
using Collector.Output;

namespace Collector.Tests.Http;

/// <summary>An exchange as it left reassembly, copied out (the exchange itself is disposed, its
/// buffers pooled) with its Akto message.</summary>
public sealed record Captured(
    int Direction, string Method, string Target, string Version, int Status, string Reason,
    IReadOnlyList<KeyValuePair<string, string>> RequestHeaders, IReadOnlyList<KeyValuePair<string, string>> ResponseHeaders,
    byte[] RequestBody, byte[] ResponseBody, bool RequestCut, bool ResponseCut, ConnectionId Connection, string Json)
{
    public string RequestText => Encoding.UTF8.GetString(RequestBody);
    public string ResponseText => Encoding.UTF8.GetString(ResponseBody);
    public JsonElement Message => JsonDocument.Parse(Json).RootElement;

    /// <summary>A headers field of the Akto message, parsed as the processor does (names lower-cased).</summary>
    public Dictionary<string, string> AktoHeaders(string field)
    {
        var d = new Dictionary<string, string>();
        foreach (var p in JsonDocument.Parse(Message.GetProperty(field).GetString()!).RootElement.EnumerateObject())
            d[p.Name.ToLowerInvariant()] = p.Value.GetString()!;
        return d;
    }

    public string Akto(string field) => Message.GetProperty(field).GetString()!;
}

/// <summary>A traced connection in a test: the traced process is the server (requests arrive,
/// Ingress) or the client (requests leave, Egress).</summary>
public sealed record TestConn(uint Tgid, uint Fd, uint Generation, bool TracedIsServer)
{
    public StreamDirection RequestDirection => TracedIsServer ? StreamDirection.Ingress : StreamDirection.Egress;
    public StreamDirection ResponseDirection => TracedIsServer ? StreamDirection.Egress : StreamDirection.Ingress;
}

/// <summary>Feeds a ConnectionTable with the same structs the kernel sends, no kernel needed.</summary>
public sealed class Harness : IDisposable
{
    // the kernel counts syscall bytes and TLS plaintext bytes apart, each from 0
    private readonly Dictionary<(uint, uint, uint, StreamDirection, bool), ulong> _positions = new();
    private readonly Collector.Output.MessageBuffer _json = new(1 << 16);
    private static uint s_generation = 1000;
    public ulong Now = 1_000_000_000;

    public Harness(int maxHeaderBytes = 64 * 1024, int maxBodyBytes = 256 * 1024, long budgetBytes = 600L << 20,
        int maxConnections = 4096, TimeSpan? inactivity = null, int? outputBodyCap = null)
    {
        Metrics = new CollectorMetrics();
        Identity = new AktoIdentity("1000000", "0", "00000000-0000-0000-0000-000000000001", []);
        OutputBodyCap = outputBodyCap ?? maxBodyBytes;
        Table = new ConnectionTable(
            new ReassemblyLimits(inactivity ?? TimeSpan.FromSeconds(30), maxConnections, budgetBytes,
                new HttpLimits(maxHeaderBytes, maxBodyBytes)),
            Metrics, OnExchange);
    }

    public ConnectionTable Table { get; }
    public CollectorMetrics Metrics { get; }
    public AktoIdentity Identity { get; }
    public int OutputBodyCap { get; }
    public List<Captured> Exchanges { get; } = new();
    /// <summary>Called for each exchange before it is disposed (tests that look at HttpMessage itself).</summary>
    public Action<HttpExchange>? Inspect { get; set; }

    private void OnExchange(HttpExchange x)
    {
        try
        {
            Inspect?.Invoke(x);
            _json.ResetWrittenCount();
            AktoMessage.Write(_json, x, Identity, 1764000000, OutputBodyCap);
            var json = Encoding.UTF8.GetString(_json.WrittenSpan);
            Exchanges.Add(new Captured(x.Direction, x.Request.Method, x.Request.Target, x.Request.Version,
                x.Response.StatusCode, x.Response.Reason, x.Request.Headers.ToArray(), x.Response.Headers.ToArray(),
                x.Request.Body.ToArray(), x.Response.Body.ToArray(),
                x.Request.BodyTruncated || x.Request.BodyHasGap || x.Request.Incomplete,
                x.Response.BodyTruncated || x.Response.BodyHasGap || x.Response.Incomplete,
                x.Connection, json));
        }
        finally
        {
            x.Dispose();
        }
    }

    public unsafe TestConn Open(uint fd, bool tracedIsServer = true, ConnectionOrigin? origin = null, uint tgid = 100,
        string comm = "testproc", bool sendOpen = true)
    {
        var c = new TestConn(tgid, fd, Interlocked.Increment(ref s_generation), tracedIsServer);
        if (!sendOpen) return c;
        var e = new OpenEvent
        {
            Header = new EventHeader { TimestampNs = Now += 1000, Type = EventType.Open, Tgid = tgid, Fd = fd, Generation = c.Generation },
            Family = 2,
            LocalPort = (ushort)(tracedIsServer ? 8080 : 40000 + fd),
            RemotePort = (ushort)(tracedIsServer ? 40000 + fd : 8080),
            Origin = origin ?? (tracedIsServer ? ConnectionOrigin.Accept : ConnectionOrigin.Connect),
        };
        e.LocalAddr[0] = 10; e.LocalAddr[3] = (byte)(tracedIsServer ? 1 : 2);
        e.RemoteAddr[0] = 10; e.RemoteAddr[3] = (byte)(tracedIsServer ? 2 : 1);
        Encoding.ASCII.GetBytes(comm).CopyTo(new Span<byte>(e.Comm, 15));
        Table.OnOpen(e);
        return c;
    }

    /// <summary>One kernel event carrying bytes in a direction, at the next position.</summary>
    public void Event(TestConn c, StreamDirection d, ReadOnlySpan<byte> bytes, EventSource source = EventSource.Syscall)
    {
        var key = (c.Tgid, c.Fd, c.Generation, d, source != EventSource.Syscall);
        var pos = _positions.GetValueOrDefault(key);
        var h = new DataEventHeader
        {
            Header = new EventHeader { TimestampNs = Now += 1000, Type = EventType.Data, Tgid = c.Tgid, Fd = c.Fd, Generation = c.Generation },
            Position = pos,
            CallBytes = (uint)bytes.Length,
            DataLength = (uint)bytes.Length,
            Direction = d,
            Source = source,
        };
        _positions[key] = pos + (ulong)bytes.Length;
        Table.OnData(h, bytes);
    }

    public void Event(TestConn c, StreamDirection d, string text) => Event(c, d, Encoding.Latin1.GetBytes(text));

    /// <summary>Bytes sent as several events, cut at the given sizes (the rest in a last event).</summary>
    public void Events(TestConn c, StreamDirection d, byte[] bytes, params int[] sizes)
    {
        var at = 0;
        foreach (var n in sizes)
        {
            if (at >= bytes.Length) break;
            var take = Math.Min(n, bytes.Length - at);
            Event(c, d, bytes.AsSpan(at, take));
            at += take;
        }
        if (at < bytes.Length) Event(c, d, bytes.AsSpan(at));
    }

    public void Request(TestConn c, string text) => Event(c, c.RequestDirection, text);
    public void Response(TestConn c, string text) => Event(c, c.ResponseDirection, text);
    public void Request(TestConn c, byte[] bytes) => Event(c, c.RequestDirection, bytes);
    public void Response(TestConn c, byte[] bytes) => Event(c, c.ResponseDirection, bytes);

    /// <summary>The kernel skipped n bytes of this direction (ring buffer full, capture limit).</summary>
    public void Gap(TestConn c, StreamDirection d, long n, bool tls = false)
    {
        var key = (c.Tgid, c.Fd, c.Generation, d, tls);
        _positions[key] = _positions.GetValueOrDefault(key) + (ulong)n;
    }

    /// <summary>n bytes of this direction went by before the capture start: the reader left the
    /// event out and told the table (RingBufferReader.CaptureFrom).</summary>
    public void LeftOutBeforeCapture(TestConn c, StreamDirection d, int n)
    {
        var key = (c.Tgid, c.Fd, c.Generation, d, false);
        var pos = _positions.GetValueOrDefault(key);
        _positions[key] = pos + (ulong)n;
        Table.OnDataBeforeCapture(new DataEventHeader
        {
            Header = new EventHeader { TimestampNs = Now += 1000, Type = EventType.Data, Tgid = c.Tgid, Fd = c.Fd, Generation = c.Generation },
            Position = pos,
            CallBytes = (uint)n,
            DataLength = (uint)n,
            Direction = d,
        });
    }

    public void Close(TestConn c) => Table.OnClose(new CloseEvent
    {
        Header = new EventHeader { TimestampNs = Now += 1000, Type = EventType.Close, Tgid = c.Tgid, Fd = c.Fd, Generation = c.Generation },
    });

    public long Drops(string reason) => Metrics.HttpDrops.Series.FirstOrDefault(s => s.Key == reason).Value?.Value ?? 0;
    public long DropsStartingWith(string prefix) => Metrics.HttpDrops.Series.Where(s => s.Key.StartsWith(prefix)).Sum(s => s.Value.Value);
    public long TotalDrops => Metrics.HttpDrops.Total;
    public string DropSummary => string.Join(", ", Metrics.HttpDrops.Series.Select(s => $"{s.Key}={s.Value.Value}"));

    public void Dispose() => Table.Dispose();

    public static byte[] Bytes(string s) => Encoding.Latin1.GetBytes(s);
}
