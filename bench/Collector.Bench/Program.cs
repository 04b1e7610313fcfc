using System.Buffers;
using System.Diagnostics;
using System.Runtime;
using Collector.Configuration;
using Collector.Connections;
using Collector.Events;
using Collector.Filtering;
using Collector.Http;
using Collector.Metrics;
using Collector.Output;
using Microsoft.Extensions.Logging.Abstractions;

namespace Collector.Bench;

/// <summary>Reassembly → filter → Akto encoding, fed with synthetic kernel events (no kernel):
/// many keep-alive connections interleaved event by event, both sides of the traffic (the traced
/// process as server and as client). `make bench`; `--quick` for a short run; `--seconds N` per
/// scenario.</summary>
public static class Program
{
    public static int Main(string[] args)
    {
        if (args.Contains("--micro"))
        {
            Micro.Run(args.SkipWhile(a => a != "--micro").Skip(1).FirstOrDefault());
            return 0;
        }
        var seconds = args.SkipWhile(a => a != "--seconds").Skip(1).Select(double.Parse).FirstOrDefault(3.0);
        if (args.Contains("--quick")) seconds = 0.5;
        var only = args.SkipWhile(a => a != "--only").Skip(1).FirstOrDefault();
        if (args.Contains("--no-churn")) Driver.ExchangesPerConnection = int.MaxValue;
        Console.WriteLine($"collector bench: {Environment.ProcessorCount} cores, .NET {Environment.Version}, " +
                          $"GC {(GCSettings.IsServerGC ? "server" : "workstation")}, {seconds}s per scenario, 2000 connections" +
                          (Driver.ExchangesPerConnection == int.MaxValue ? " (never closed)" : $" (each closed after {Driver.ExchangesPerConnection} exchanges)"));
        var scenarios = new (string Name, Func<int, StreamDirection, ExchangeTemplate> Make)[]
        {
            ("plain 4 KiB", (v, d) => Traffic.Plain(4096, v, d)),
            ("plain 1 KiB", (v, d) => Traffic.Plain(1024, v, d)),
            ("POST 1 KiB / 4 KiB", (v, d) => Traffic.Post(1024, 4096, v, d)),
            ("chunked 4 KiB (4 x 1 KiB)", (v, d) => Traffic.Chunked(4096, 1024, v, d)),
            ("gzip 4 KiB", (v, d) => Traffic.Gzipped(4096, v, d)),
            ("mixed", Mixed),
        };
        var rows = new List<Result>();
        foreach (var s in scenarios)
        {
            if (only is not null && !s.Name.Contains(only, StringComparison.OrdinalIgnoreCase)) continue;
            var driver = new Driver(s.Make, connections: 2000);
            driver.Run(TimeSpan.FromSeconds(Math.Min(1, seconds / 2))); // warm-up (tiered JIT, pools)
            var r = driver.Run(TimeSpan.FromSeconds(seconds));
            driver.Dispose();
            rows.Add(r with { Name = s.Name });
            Console.Error.WriteLine($"  {rows[^1].Name}: done");
        }
        Print(rows);
        return 0;
    }

    // 40% plain 4 KiB, 20% POST 1 KiB → 4 KiB, 20% chunked 4 KiB, 10% plain 1 KiB, 10% gzip 4 KiB
    private static ExchangeTemplate Mixed(int v, StreamDirection d) => (v % 10) switch
    {
        0 or 1 or 2 or 3 => Traffic.Plain(4096, v, d),
        4 or 5 => Traffic.Post(1024, 4096, v, d),
        6 or 7 => Traffic.Chunked(4096, 1024, v, d),
        8 => Traffic.Plain(1024, v, d),
        _ => Traffic.Gzipped(4096, v, d),
    };

    private static void Print(List<Result> rows)
    {
        Console.WriteLine();
        Console.WriteLine("| scenario | events/s | exchanges/s | MB/s (payload) | alloc B/exchange | alloc B/event (event thread) | GCs (0/1/2) | peak RSS MB |");
        Console.WriteLine("|---|---:|---:|---:|---:|---:|---|---:|");
        foreach (var r in rows)
            Console.WriteLine($"| {r.Name} | {r.EventsPerSecond:N0} | {r.ExchangesPerSecond:N0} | {r.PayloadMbPerSecond:N0} | " +
                              $"{r.AllocPerExchange:N0} | {r.AllocPerEventOnEventThread:N1} | {r.Gcs} | {r.PeakRssMb:N0} |");
    }
}

public sealed record Result(string Name, double EventsPerSecond, double ExchangesPerSecond, double PayloadMbPerSecond,
    double AllocPerExchange, double AllocPerEventOnEventThread, string Gcs, double PeakRssMb);

/// <summary>Discards messages (counts them): the cost measured is ours, not a sink's.</summary>
public sealed class DiscardSink : IMessageSink
{
    public long Messages, Bytes;
    public void Publish(ReadOnlySpan<byte> message, ReadOnlySpan<byte> collectionDetails) { Messages++; Bytes += message.Length; }
    public Task<long> FlushAsync(TimeSpan grace) => Task.FromResult(0L);
    public bool? Reachable => null;
    public void Idle() { }
    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}

public sealed class Driver : IDisposable
{
    private const int Variants = 64;
    // then the connection closes and a new one opens (its objects are the only allocations of
    // reassembly); --no-churn: keep-alive for ever
    public static int ExchangesPerConnection = 200;

    private sealed class Conn
    {
        public uint Fd;
        public uint Generation;
        public ulong EgressPos, IngressPos;
        public int Exchange;
        public int Event;
        public ExchangeTemplate Template = null!;
        public StreamDirection RequestDirection;
    }

    private readonly ExchangeTemplate[][] _templates; // [direction][variant]
    private readonly Conn[] _conns;
    private readonly ConnectionTable _table;
    private readonly OutputPipeline _pipeline;
    private readonly DiscardSink _sink = new();
    private readonly MessageBuffer _buffer = new(64 * 1024);
    private long _emitted;
    private ulong _now = 1_000_000_000;
    private uint _generation = 1;
    private const uint Tgid = 4242;

    public Driver(Func<int, StreamDirection, ExchangeTemplate> make, int connections)
    {
        _templates =
        [
            Enumerable.Range(0, Variants).Select(v => make(v, StreamDirection.Ingress)).ToArray(),
            Enumerable.Range(0, Variants).Select(v => make(v, StreamDirection.Egress)).ToArray(),
        ];
        var metrics = new CollectorMetrics();
        var settings = new Settings();
        var filter = new ExchangeFilter(settings, [], new Dictionary<string, string>());
        _pipeline = new OutputPipeline(filter, _sink, metrics, new AktoIdentity("1000000", "0", Guid.NewGuid().ToString(), []),
            settings.MaxBodyBytes, settings.KafkaMaxMessageBytes, NullLogger.Instance);
        var limits = new ReassemblyLimits(TimeSpan.FromSeconds(30), 4096, 600L << 20, new HttpLimits(settings.MaxHeaderBytes, settings.MaxBodyBytes));
        _table = new ConnectionTable(limits, metrics, HandleInline);
        _conns = new Conn[connections];
        for (var i = 0; i < connections; i++)
        {
            _conns[i] = new Conn { Fd = (uint)(10 + i), RequestDirection = i % 2 == 0 ? StreamDirection.Ingress : StreamDirection.Egress };
            Open(_conns[i], i);
        }
    }

    public long OutputAllocated, OutputTicks;

    private void HandleInline(HttpExchange x)
    {
        _emitted++;
        var before = GC.GetAllocatedBytesForCurrentThread();
        var t0 = Stopwatch.GetTimestamp();
        try { _pipeline.Handle(x, _buffer); }
        finally { x.Dispose(); }
        OutputTicks += Stopwatch.GetTimestamp() - t0;
        OutputAllocated += GC.GetAllocatedBytesForCurrentThread() - before;
    }

    private unsafe void Open(Conn c, int index)
    {
        c.Generation = _generation++;
        c.EgressPos = c.IngressPos = 0;
        c.Exchange = 0;
        c.Event = 0;
        c.Template = _templates[c.RequestDirection == StreamDirection.Ingress ? 0 : 1][index % Variants];
        var e = new OpenEvent
        {
            Header = new EventHeader { TimestampNs = _now, Type = EventType.Open, Tgid = Tgid, Fd = c.Fd, Generation = c.Generation },
            Family = 2,
            LocalPort = 8080,
            RemotePort = (ushort)(30000 + index),
            Origin = c.RequestDirection == StreamDirection.Ingress ? ConnectionOrigin.Accept : ConnectionOrigin.Connect,
        };
        e.LocalAddr[0] = 10; e.LocalAddr[3] = 1;
        e.RemoteAddr[0] = 10; e.RemoteAddr[3] = 2;
        "bench"u8.CopyTo(new Span<byte>(e.Comm, 16));
        _table.OnOpen(e);
    }

    public Result Run(TimeSpan duration)
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        var gc0 = GC.CollectionCount(0); var gc1 = GC.CollectionCount(1); var gc2 = GC.CollectionCount(2);
        var allocAll = GC.GetTotalAllocatedBytes(true);
        var allocThread = GC.GetAllocatedBytesForCurrentThread();
        var emitted0 = _emitted;
        var output0 = OutputAllocated;
        long events = 0, payload = 0;
        var sw = Stopwatch.StartNew();
        var stopAt = (long)(duration.TotalSeconds * Stopwatch.Frequency);
        var conns = _conns;
        var step = 0;
        while (true)
        {
            // a batch between clock reads
            for (var k = 0; k < 4096; k++)
            {
                var c = conns[step];
                if (++step == conns.Length) step = 0;
                payload += Next(c, step);
                events++;
            }
            if (sw.ElapsedTicks >= stopAt) break;
        }
        var eventThreadAlloc = GC.GetAllocatedBytesForCurrentThread() - allocThread;
        if (Environment.GetEnvironmentVariable("BENCH_DIAG") is not null)
            Console.Error.WriteLine($"  output share of time: {(double)OutputTicks / sw.ElapsedTicks:P0}, output bytes {_sink.Bytes / Math.Max(1, _sink.Messages)}/msg");
        OutputTicks = 0;
        sw.Stop();
        var allocated = GC.GetTotalAllocatedBytes(true) - allocAll;
        var exchanges = _emitted - emitted0;
        var secs = sw.Elapsed.TotalSeconds;
        return new Result("", events / secs, exchanges / secs, payload / secs / 1e6,
            exchanges == 0 ? 0 : (double)allocated / exchanges,
            (double)(eventThreadAlloc - (OutputAllocated - output0)) / events,
            $"{GC.CollectionCount(0) - gc0}/{GC.CollectionCount(1) - gc1}/{GC.CollectionCount(2) - gc2}",
            Process.GetCurrentProcess().PeakWorkingSet64 / 1048576.0);
    }

    private unsafe int Next(Conn c, int index)
    {
        var ev = c.Template.Events[c.Event];
        ref var pos = ref ev.Direction == StreamDirection.Egress ? ref c.EgressPos : ref c.IngressPos;
        var h = new DataEventHeader
        {
            Header = new EventHeader { TimestampNs = _now += 1000, Type = EventType.Data, Tgid = Tgid, Fd = c.Fd, Generation = c.Generation },
            Position = pos,
            CallBytes = (uint)ev.Payload.Length,
            DataLength = (uint)ev.Payload.Length,
            Direction = ev.Direction,
            Source = EventSource.Syscall,
        };
        pos += (ulong)ev.Payload.Length;
        _table.OnData(h, ev.Payload);
        if (++c.Event == c.Template.Events.Length)
        {
            c.Event = 0;
            if (++c.Exchange == ExchangesPerConnection)
            {
                _table.OnClose(new CloseEvent
                {
                    Header = new EventHeader { TimestampNs = _now, Type = EventType.Close, Tgid = Tgid, Fd = c.Fd, Generation = c.Generation },
                    EgressBytes = c.EgressPos,
                    IngressBytes = c.IngressPos,
                });
                Open(c, index + c.Exchange);
            }
            else
            {
                c.Template = _templates[c.RequestDirection == StreamDirection.Ingress ? 0 : 1][(index + c.Exchange) % Variants];
            }
        }
        return ev.Payload.Length;
    }

    public void Dispose()
    {
        _table.EndAll("shutdown");
    }
}
