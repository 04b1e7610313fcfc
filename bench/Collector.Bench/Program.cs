using System.Buffers;
using System.Buffers.Binary;
using System.Diagnostics;
using System.Runtime;
using Collector.Configuration;
using Collector.Connections;
using Collector.Events;
using Collector.Filtering;
using Collector.Http;
using Collector.Metrics;
using Collector.Output;
using Collector.Sensitive;
using Microsoft.Extensions.Logging.Abstractions;

namespace Collector.Bench;

/// <summary>Reassembly → filter → Akto encoding, fed with synthetic kernel events (no kernel):
/// many keep-alive connections interleaved event by event, both sides of the traffic (the traced
/// process as server and as client). `make bench`; `--quick` for a short run; `--seconds N` per
/// scenario; `--only TEXT` for the scenarios whose name (or tag: h2) contains it; `--verify` to
/// only check that every scenario's exchanges come out whole and none is dropped (each scenario
/// is checked so before it is measured, and the run stops at one that fails). HTTP/2 rows are compared with the HTTP/1 row of
/// the same body size (run too when --only left it out).</summary>
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
        // --sink stdout | kafka=<bootstrap>: the rows publish to a real sink (stdout: redirect it;
        // Kafka: a broker such as build/mock_kafka) instead of discarding, and print the whole
        // process's CPU per exchange, the sink's threads (librdkafka's) included
        var sinkArg = args.SkipWhile(a => a != "--sink").Skip(1).FirstOrDefault();
        if (sinkArg is not null) Driver.SinkFactory = () => MakeSink(sinkArg);
        Console.WriteLine($"collector bench: {Environment.ProcessorCount} cores, .NET {Environment.Version}, " +
                          $"GC {(GCSettings.IsServerGC ? "server" : "workstation")}, {seconds}s per scenario, 2000 connections" +
                          (Driver.ExchangesPerConnection == int.MaxValue ? " (never closed)" : $" (each closed after {Driver.ExchangesPerConnection} exchanges)"));
        var scenarios = new Scenario[]
        {
            new("plain 4 KiB", Http1((v, d) => Traffic.Plain(4096, v, d))),
            new("plain 1 KiB", Http1((v, d) => Traffic.Plain(1024, v, d))),
            new("POST 1 KiB / 4 KiB", Http1((v, d) => Traffic.Post(1024, 4096, v, d))),
            new("chunked 4 KiB (4 x 1 KiB)", Http1((v, d) => Traffic.Chunked(4096, 1024, v, d))),
            new("gzip 4 KiB", Http1((v, d) => Traffic.Gzipped(4096, v, d))),
            new("mixed", Http1(Mixed)),
            new("h2 1 KiB (8 streams/conn interleaved)", (v, d) => Http2Traffic.Get(1024, v, d), "h2", "plain 1 KiB"),
            new("h2 4 KiB (8 streams)", (v, d) => Http2Traffic.Get(4096, v, d), "h2", "plain 4 KiB"),
            new("gRPC unary 1 KiB", (v, d) => Http2Traffic.GrpcUnary(1024, v, d), "h2 grpc", "plain 1 KiB"),
            // SENSITIVE_DATA_POLICY=default beside the same traffic without it; the PII rows carry
            // cards, emails, phones and SSNs in their JSON (found, counted and named in the message)
            new("plain 4 KiB + sensitive", Http1((v, d) => Traffic.Plain(4096, v, d)), "sensitive", "plain 4 KiB", SensitivePolicy.Default),
            new("POST 1 KiB / 4 KiB + sensitive", Http1((v, d) => Traffic.Post(1024, 4096, v, d)), "sensitive", "POST 1 KiB / 4 KiB", SensitivePolicy.Default),
            new("chunked 4 KiB (4 x 1 KiB) + sensitive", Http1((v, d) => Traffic.Chunked(4096, 1024, v, d)), "sensitive", "chunked 4 KiB (4 x 1 KiB)", SensitivePolicy.Default),
            new("gzip 4 KiB + sensitive", Http1((v, d) => Traffic.Gzipped(4096, v, d)), "sensitive", "gzip 4 KiB", SensitivePolicy.Default),
            new("PII 4 KiB", Http1((v, d) => Traffic.Pii(4096, v, d)), "pii"),
            new("PII 4 KiB + sensitive", Http1((v, d) => Traffic.Pii(4096, v, d)), "sensitive pii", "PII 4 KiB", SensitivePolicy.Default),
            new("PII 4 KiB + sensitive mask", Http1((v, d) => Traffic.Pii(4096, v, d)), "sensitive pii", "PII 4 KiB", MaskPolicy),
        };
        bool Selected(Scenario s) => only is null || s.Name.Contains(only, StringComparison.OrdinalIgnoreCase) ||
                                     s.Tags.Contains(only, StringComparison.OrdinalIgnoreCase);
        var baselines = scenarios.Where(Selected).Select(s => s.Baseline).OfType<string>().ToHashSet();
        var verifyOnly = args.Contains("--verify");
        var rows = new List<Result>();
        foreach (var s in scenarios)
        {
            if (!Selected(s) && !(baselines.Contains(s.Name) && !verifyOnly)) continue;
            {
                // correctness before speed: a few connections through their whole life (and a
                // reopen). It also warms every row alike (the h2 rows are primed besides, which
                // would otherwise leave a --quick HTTP/1 row partly in tier-0 code beside them).
                using var check = new Driver(s.Make, connections: 16, s.Policy);
                var (ok, report) = check.Verify();
                Console.Error.WriteLine($"  {s.Name}: {report}");
                if (!ok) return 1;
                if (verifyOnly) continue;
            }
            var driver = new Driver(s.Make, connections: 2000, s.Policy);
            driver.Prime();
            driver.Run(TimeSpan.FromSeconds(Math.Min(1, seconds / 2))); // warm-up (tiered JIT, pools)
            var r = driver.Run(TimeSpan.FromSeconds(seconds));
            driver.Dispose();
            rows.Add(r with { Name = s.Name });
            Console.Error.WriteLine($"  {rows[^1].Name}: done");
        }
        if (verifyOnly) return 0;
        Print(rows);
        PrintRatios(scenarios, rows);
        PrintInterleaved(scenarios.Where(s => s.Policy is not null && Selected(s)).ToArray(), scenarios, seconds);
        if (args.Contains("--interleave"))
            PrintInterleavedRatios(scenarios.Where(s => s.Policy is null && s.Baseline is not null && Selected(s)).ToArray(), scenarios, seconds);
        return 0;
    }

    private static IMessageSink MakeSink(string arg)
    {
        if (arg == "stdout") return new StdoutSink();
        if (!arg.StartsWith("kafka=", StringComparison.Ordinal)) throw new ArgumentException($"--sink {arg}: stdout or kafka=<bootstrap>");
        // the variables the collector reads (AKTO_TRAFFIC_BATCH_SIZE, KAFKA_COMPRESSION ...) apply
        var env = new Dictionary<string, string?>();
        foreach (System.Collections.DictionaryEntry e in Environment.GetEnvironmentVariables()) env[(string)e.Key] = (string?)e.Value;
        env["AKTO_KAFKA_BROKER_URL"] = arg["kafka=".Length..];
        env.Remove("AKTO_KAFKA_BROKER_MAL");
        var settings = SettingsReader.Read(env);
        var sink = new KafkaSink(settings, Driver.SinkMetrics, "bench", NullLogger.Instance);
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (sink.Reachable != true)
        {
            if (DateTime.UtcNow > deadline) throw new InvalidOperationException($"the broker at {arg} did not answer");
            Thread.Sleep(50);
        }
        return sink;
    }

    private sealed record Scenario(string Name, Func<int, StreamDirection, ReplayTemplate> Make, string Tags = "", string? Baseline = null,
        SensitivePolicy? Policy = null);

    internal static readonly SensitivePolicy MaskPolicy = SensitivePolicy.Parse(
        "categories:\n  CREDIT_CARD: {action: mask}\n  SSN: {action: mask}\n  EMAIL: {action: mask}\n  PHONE_NUMBER: {action: mask}\n", "bench");

    private static Func<int, StreamDirection, ReplayTemplate> Http1(Func<int, StreamDirection, ExchangeTemplate> make) =>
        (v, d) => ReplayTemplate.Of(make(v, d));

    /// <summary>The classification share again, its row and its baseline run in alternating slices
    /// (8 each) so that both see the same machine: the rows above run one after the other, and on
    /// a shared machine the load moves between them by more than the difference measured. The
    /// median CPU per exchange of each.</summary>
    private static void PrintInterleaved(Scenario[] withPolicy, Scenario[] scenarios, double seconds)
    {
        foreach (var s in withPolicy)
        {
            var baseline = scenarios.First(b => b.Name == s.Baseline);
            var (onCpu, offCpu, inRow, outside) = Alternate(s, baseline, seconds);
            var (a, b) = (Median(onCpu), Median(offCpu));
            // the share in each pair of neighbouring slices too, and their median: the load of a
            // shared machine moves between pairs more than within one, so the pairs' spread says
            // how far the figure can be trusted
            var pairs = onCpu.Select((on, i) => (on - offCpu[i]) / on).Order().ToList();
            Console.WriteLine($"interleaved, 8 slices each: {s.Name} {a / 1000:N1} us vs {baseline.Name} {b / 1000:N1} us CPU per exchange (medians): " +
                              $"classification {(a - b) / a:P0} of the pipeline (goal <= 25% on the 4 KiB JSON rows); " +
                              $"per slice pair: median {Median(pairs):P0}, range {pairs[0]:P0} to {pairs[^1]:P0}; " +
                              $"in the row's slices, by the classifier's clock: median {Median(inRow):P0}, range {inRow.Min():P0} to {inRow.Max():P0}; " +
                              $"the row's CPU outside the classifier {Median(outside) / 1000:N1} us per exchange against the baseline's {b / 1000:N1} us (medians)");
        }
    }

    /// <summary>`--interleave`: the HTTP/2 rows against their HTTP/1 rows in alternating slices (8
    /// each), for a ratio that holds on a machine whose load moves between rows run one after the
    /// other (a shared 2-core machine moved the ratio by more than the changes it was to judge).</summary>
    private static void PrintInterleavedRatios(Scenario[] rows, Scenario[] scenarios, double seconds)
    {
        foreach (var s in rows)
        {
            var baseline = scenarios.First(b => b.Name == s.Baseline);
            var (h2Cpu, h1Cpu, _, _) = Alternate(s, baseline, seconds);
            var ratios = h2Cpu.Select((h2, i) => h2 / h1Cpu[i]).ToList();
            Console.WriteLine($"interleaved, 8 slices each: {s.Name} {Median(h2Cpu) / 1000:N2} us vs {baseline.Name} {Median(h1Cpu) / 1000:N2} us CPU per exchange (medians), " +
                              $"ratio of medians {Median(h2Cpu) / Median(h1Cpu):N2}x, median of slice ratios {Median(ratios):N2}x (range {ratios.Min():N2}-{ratios.Max():N2}) (goal <= 2x)");
        }
    }

    /// <summary>A row and its baseline, each primed and warmed, then run in 8 alternating slices
    /// (baseline first in each pair): the CPU per exchange of every slice of each, the share of
    /// each row slice that its classifier timed, and the row's CPU per exchange outside it.</summary>
    private static (List<double> Row, List<double> Baseline, List<double> ClassifyShare, List<double> Outside) Alternate(Scenario row, Scenario baseline,
        double seconds)
    {
        using var r = new Driver(row.Make, connections: 2000, row.Policy);
        using var b = new Driver(baseline.Make, connections: 2000);
        r.Prime();
        b.Prime();
        r.Run(TimeSpan.FromSeconds(0.5));
        b.Run(TimeSpan.FromSeconds(0.5));
        var slice = TimeSpan.FromSeconds(Math.Max(0.25, seconds / 4));
        var rowCpu = new List<double>();
        var baselineCpu = new List<double>();
        var share = new List<double>();
        var outside = new List<double>();
        for (var i = 0; i < 8; i++)
        {
            baselineCpu.Add(b.Run(slice).CpuNsPerExchange);
            var result = r.Run(slice);
            rowCpu.Add(result.CpuNsPerExchange);
            share.Add(result.ClassifyShare);
            outside.Add(result.CpuNsPerExchange - result.ClassifyNsPerExchange);
        }
        return (rowCpu, baselineCpu, share, outside);
    }

    private static double Median(List<double> xs)
    {
        var sorted = xs.Order().ToArray();
        return sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;
    }

    /// <summary>(1 / exchanges per second) of an HTTP/2 row over that of its HTTP/1 row.</summary>
    private static void PrintRatios(Scenario[] scenarios, List<Result> rows)
    {
        if (rows.Any(r => scenarios.First(s => s.Name == r.Name).Baseline is not null)) Console.WriteLine();
        foreach (var r in rows)
        {
            if (scenarios.First(s => s.Name == r.Name) is not { Baseline: { } name } scenario) continue;
            if (rows.FirstOrDefault(b => b.Name == name) is not { } b || r.ExchangesPerSecond == 0) continue;
            if (scenario.Policy is not null)
            {
                // the share of the pipeline's CPU per exchange that classification takes: (with - without) / with
                var byRate = 1 - r.ExchangesPerSecond / b.ExchangesPerSecond;
                var byCpu = r.CpuNsPerExchange > 0 && b.CpuNsPerExchange > 0
                    ? $"; by thread CPU time {(r.CpuNsPerExchange - b.CpuNsPerExchange) / r.CpuNsPerExchange:P0} ({r.CpuNsPerExchange / 1000:N1} vs {b.CpuNsPerExchange / 1000:N1} us)" : "";
                Console.WriteLine($"classification share of CPU per exchange: {r.Name} vs {name} = {byRate:P0} by exchanges/s{byCpu}; " +
                                  $"in the row, by the classifier's clock {r.ClassifyShare:P0} (goal <= 25% on the 4 KiB JSON rows)");
                continue;
            }
            // the second figure is the event thread's CPU time per exchange: the same thing on a quiet
            // machine, and still meaningful on a busy one (where exchanges/s follows the scheduler)
            var cpu = r.CpuNsPerExchange > 0 && b.CpuNsPerExchange > 0 ? $"; by thread CPU time {r.CpuNsPerExchange / b.CpuNsPerExchange:N2}x" +
                $" ({r.CpuNsPerExchange / 1000:N1} vs {b.CpuNsPerExchange / 1000:N1} us)" : "";
            Console.WriteLine($"CPU per exchange vs HTTP/1 (same body size): {r.Name} / {name} = " +
                              $"{b.ExchangesPerSecond / r.ExchangesPerSecond:N2}x by exchanges/s{cpu} (goal <= 2x)");
        }
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
    double AllocPerExchange, double AllocPerEventOnEventThread, string Gcs, double PeakRssMb, double CpuNsPerExchange = 0,
    double ClassifyShare = 0, double ClassifyNsPerExchange = 0);

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

/// <summary>What the Driver replays on a connection, one template after another (an HTTP/1
/// template is one exchange; an HTTP/2 one is several streams).</summary>
public sealed class ReplayTemplate
{
    public required SyntheticEvent[] Events { get; init; }
    /// <summary>Per event, null or (offset, relative stream id) pairs: before the event is handed
    /// over, each is rewritten in place to the relative id + <see cref="StreamIdStride"/> × the
    /// templates already played on the connection, so that stream ids keep increasing. (Templates
    /// are shared by connections; the rewrite is safe because OnData keeps nothing of the span.)</summary>
    public int[]?[]? StreamIds { get; init; }
    public int StreamIdStride { get; init; }
    /// <summary>Played once when a connection opens, before its first template (the HTTP/2 preface
    /// and SETTINGS).</summary>
    public SyntheticEvent[]? ConnectionStart { get; init; }
    /// <summary>Exchanges the template makes.</summary>
    public int Exchanges { get; init; } = 1;
    /// <summary>Verification: null when an exchange this template made is as it was sent.</summary>
    public Func<HttpExchange, string?>? Check { get; init; }

    public static ReplayTemplate Of(ExchangeTemplate t) => new() { Events = t.Events };
}

public sealed class Driver : IDisposable
{
    private const int Variants = 64;
    // then the connection closes and a new one opens (its objects are the only allocations of
    // reassembly); --no-churn: keep-alive for ever. An HTTP/2 connection closes after as many
    // exchanges (streams), in whole templates.
    public static int ExchangesPerConnection = 200;

    private sealed class Conn
    {
        public uint Fd;
        public uint Generation;
        public ulong EgressPos, IngressPos;
        public int Exchange; // templates played since the connection opened
        public int Event;
        public ReplayTemplate Template = null!;
        public StreamDirection RequestDirection;
        public SyntheticEvent[]? Start;
        public int StartEvent;
        public int Completed; // templates played, reopens included (verification)
    }

    private readonly ReplayTemplate[][] _templates; // [direction][variant]
    private readonly int _templatesPerConnection;
    private readonly Conn[] _conns;
    private readonly ConnectionTable _table;
    private readonly OutputPipeline _pipeline;
    private readonly CollectorMetrics _metrics = new();
    private readonly DiscardSink _sink = new();
    /// <summary>--sink: a real sink for the rows (null: discard).</summary>
    public static Func<IMessageSink>? SinkFactory;
    public static readonly CollectorMetrics SinkMetrics = new();
    private readonly IMessageSink? _realSink;
    private readonly MessageBuffer _buffer = new(64 * 1024);
    private long _emitted, _expected, _opensWithStart;
    private ulong _now = 1_000_000_000;
    private uint _generation = 1;
    private const uint Tgid = 4242;
    private Func<HttpExchange, string?>? _check;
    private long _checkFailures;
    private string? _firstCheckFailure;

    public Driver(Func<int, StreamDirection, ReplayTemplate> make, int connections, SensitivePolicy? policy = null)
    {
        _templates =
        [
            Enumerable.Range(0, Variants).Select(v => make(v, StreamDirection.Ingress)).ToArray(),
            Enumerable.Range(0, Variants).Select(v => make(v, StreamDirection.Egress)).ToArray(),
        ];
        var perTemplate = _templates[0][0].Exchanges;
        _templatesPerConnection = ExchangesPerConnection == int.MaxValue ? int.MaxValue : Math.Max(1, ExchangesPerConnection / perTemplate);
        var settings = new Settings();
        var filter = new ExchangeFilter(settings, [], new Dictionary<string, string>());
        _realSink = connections > 16 ? SinkFactory?.Invoke() : null; // the verification runs discard
        _pipeline = new OutputPipeline(filter, _realSink ?? _sink, _metrics, new AktoIdentity("1000000", "0", Guid.NewGuid().ToString(), []),
            settings.MaxBodyBytes, settings.KafkaMaxMessageBytes, NullLogger.Instance,
            policy is null ? null : new SensitivePolicySource(policy), System.Text.Encoding.UTF8.GetBytes("bench-mask-key-0123456789"));
        var limits = new ReassemblyLimits(TimeSpan.FromSeconds(30), 4096, 600L << 20, new HttpLimits(settings.MaxHeaderBytes, settings.MaxBodyBytes));
        _table = new ConnectionTable(limits, _metrics, HandleInline);
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
        if (_check is not null && _check(x) is { } failure)
        {
            _checkFailures++;
            _firstCheckFailure ??= failure;
        }
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
        c.Start = c.Template.ConnectionStart;
        c.StartEvent = 0;
        if (c.Start is not null) _opensWithStart++;
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
        using var sampler = Environment.GetEnvironmentVariable("BENCH_DIAG") == "alloc" ? new AllocationSampler() : null;
        var gc0 = GC.CollectionCount(0); var gc1 = GC.CollectionCount(1); var gc2 = GC.CollectionCount(2);
        var allocAll = GC.GetTotalAllocatedBytes(true);
        var allocThread = GC.GetAllocatedBytesForCurrentThread();
        var emitted0 = _emitted;
        var output0 = OutputAllocated;
        long events = 0, payload = 0;
        var cpu0 = ThreadCpuNs();
        var classify0 = _metrics.Sensitive.ClassifyTicks.Value;
        var process0 = Process.GetCurrentProcess().TotalProcessorTime;
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
            if (_realSink is KafkaSink kafka)
            {
                // keep within the sink's bound: what it sheds would cost nothing and flatter it
                // (sleeping costs no CPU, and CPU is what is measured)
                while (kafka.Waiting > 20_000) Thread.Sleep(1);
            }
            else _realSink?.Idle();
        }
        // the classifier's own clock (the collector's classify-seconds series) against the run's,
        // on the one thread that does both, read before a real sink's flush: a share that needs no
        // second row (it leaves out what classifying costs the steps after it, and a first read of
        // bytes no step has read yet is paid by whichever step reads them first)
        var classifyTicks = _metrics.Sensitive.ClassifyTicks.Value - classify0;
        var classifyShare = (double)classifyTicks / sw.ElapsedTicks;
        if (_realSink is not null)
        {
            // what the measured run handed over is delivered (compressed, sent, acknowledged) before
            // the CPU is read: the sink's cost is in the figure, not left for later
            var left = _realSink.FlushAsync(TimeSpan.FromSeconds(60)).GetAwaiter().GetResult();
            var processNs = (Process.GetCurrentProcess().TotalProcessorTime - process0).TotalMilliseconds * 1e6;
            var n = _emitted - emitted0;
            var m = SinkMetrics.KafkaMessages;
            Console.Error.WriteLine($"sink {_realSink.GetType().Name}: process CPU {processNs / Math.Max(1, n) / 1000:N2} us per exchange over {n:N0} exchanges" +
                              (_realSink is KafkaSink ? $" (kafka queued {m["queued"].Value:N0}, delivered {m["delivered"].Value:N0}, shed {m["shed"].Value:N0}, failed {m["failed"].Value:N0}, not flushed {left})" : ""));
        }
        var eventThreadAlloc = GC.GetAllocatedBytesForCurrentThread() - allocThread;
        var cpuNs = ThreadCpuNs() - cpu0;
        if (Environment.GetEnvironmentVariable("BENCH_DIAG") is not null)
            Console.Error.WriteLine($"  output share of time: {(double)OutputTicks / sw.ElapsedTicks:P0}, output bytes {_sink.Bytes / Math.Max(1, _sink.Messages)}/msg, " +
                                    $"output alloc {(double)(OutputAllocated - output0) / Math.Max(1, _emitted - emitted0):N0} B/exchange");
        sampler?.Report(_emitted - emitted0);
        OutputTicks = 0;
        sw.Stop();
        var allocated = GC.GetTotalAllocatedBytes(true) - allocAll;
        var exchanges = _emitted - emitted0;
        var secs = sw.Elapsed.TotalSeconds;
        return new Result("", events / secs, exchanges / secs, payload / secs / 1e6,
            exchanges == 0 ? 0 : (double)allocated / exchanges,
            (double)(eventThreadAlloc - (OutputAllocated - output0)) / events,
            $"{GC.CollectionCount(0) - gc0}/{GC.CollectionCount(1) - gc1}/{GC.CollectionCount(2) - gc2}",
            Process.GetCurrentProcess().PeakWorkingSet64 / 1048576.0,
            exchanges == 0 || cpu0 < 0 ? 0 : (double)cpuNs / exchanges, classifyShare,
            exchanges == 0 ? 0 : classifyTicks * 1e9 / Stopwatch.Frequency / exchanges);
    }

    /// <summary>Nanoseconds this thread has run on a CPU (Linux schedstat), -1 where unknown.</summary>
    private static long ThreadCpuNs()
    {
        try { return long.Parse(File.ReadAllText("/proc/thread-self/schedstat").Split(' ')[0]); }
        catch (IOException) { return -1; }
        catch (UnauthorizedAccessException) { return -1; }
    }

    /// <summary>For templates of several exchanges (HTTP/2): every connection plays through its
    /// preface and first template, then connection i plays i % 17 events more. Otherwise the
    /// connections, opened together and played in turn, would all end their templates in the same
    /// sweep (8 exchanges each, every ten or so sweeps of 2000 connections), and a short run would
    /// count a burst more or less. HTTP/1 templates: nothing (their rows stay as they were).</summary>
    public void Prime()
    {
        if (_templates[0][0].Exchanges == 1) return;
        bool more;
        do
        {
            more = false;
            for (var i = 0; i < _conns.Length; i++)
            {
                if (_conns[i].Completed >= 1) continue;
                Next(_conns[i], i + 1);
                more = true;
            }
        } while (more);
        for (var i = 0; i < _conns.Length; i++)
            for (var k = 0; k < i % 17; k++)
                Next(_conns[i], i + 1);
        OutputTicks = 0;
    }

    /// <summary>Plays every connection through whole templates, past one close and reopen (five
    /// templates without churn), then ends them: every exchange sent must come out, as sent
    /// (the template's check), with nothing dropped.</summary>
    public (bool Ok, string Report) Verify()
    {
        _check = _templates[0][0].Check;
        var perConnection = _templatesPerConnection == int.MaxValue ? 5 : _templatesPerConnection + 3;
        var emitted0 = _emitted;
        var expected0 = _expected;
        bool more;
        do
        {
            more = false;
            for (var i = 0; i < _conns.Length; i++)
            {
                if (_conns[i].Completed >= perConnection) continue;
                Next(_conns[i], i + 1);
                more = true;
            }
        } while (more);
        _table.EndAll("shutdown");
        _check = null;
        var emitted = _emitted - emitted0;
        var expected = _expected - expected0;
        var problems = new List<string>();
        if (emitted != expected) problems.Add($"{expected} exchanges sent, {emitted} emitted");
        var drops = _metrics.HttpDrops.Series.Where(kv => kv.Value.Value > 0).Select(kv => $"{kv.Key}={kv.Value.Value}").ToList();
        if (drops.Count > 0) problems.Add("drops: " + string.Join(", ", drops));
        var unnamed = _metrics.Http2StreamsUnnamed.Series.Where(kv => kv.Value.Value > 0).Select(kv => $"{kv.Key}={kv.Value.Value}").ToList();
        if (unnamed.Count > 0) problems.Add("h2 streams unnamed: " + string.Join(", ", unnamed));
        if (_metrics.Http2UnknownFields.Value > 0) problems.Add($"h2 unknown fields: {_metrics.Http2UnknownFields.Value}");
        var cut = _metrics.BodiesCut.Series.Where(kv => kv.Value.Value > 0).Select(kv => $"{kv.Key}={kv.Value.Value}").ToList();
        if (cut.Count > 0) problems.Add("bodies cut: " + string.Join(", ", cut));
        var prefaces = _metrics.Http2Connections["preface"].Value;
        if (prefaces != _opensWithStart) problems.Add($"{_opensWithStart} h2 connections opened, {prefaces} seen as h2 (preface)");
        if (_checkFailures > 0) problems.Add($"{_checkFailures} exchanges not as sent (first: {_firstCheckFailure})");
        var what = $"verified {_conns.Length} connections x {perConnection} templates ({_generation - 1} opened): " +
                   $"{expected} exchanges sent, {emitted} emitted";
        return problems.Count == 0 ? (true, what + ", none dropped") : (false, "VERIFY FAILED: " + string.Join("; ", problems));
    }

    private int Next(Conn c, int index)
    {
        if (c.Start is { } start)
        {
            var n = Play(c, start[c.StartEvent], null, 0);
            if (++c.StartEvent == start.Length) c.Start = null;
            return n;
        }
        var t = c.Template;
        var length = Play(c, t.Events[c.Event], t.StreamIds?[c.Event], t.StreamIdStride * c.Exchange);
        if (++c.Event == t.Events.Length)
        {
            c.Event = 0;
            c.Completed++;
            _expected += t.Exchanges;
            if (++c.Exchange == _templatesPerConnection)
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
        return length;
    }

    private int Play(Conn c, SyntheticEvent ev, int[]? streamIds, int streamBase)
    {
        if (streamIds is not null)
            for (var k = 0; k < streamIds.Length; k += 2)
                BinaryPrimitives.WriteUInt32BigEndian(ev.Payload.AsSpan(streamIds[k]), (uint)(streamIds[k + 1] + streamBase));
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
        return ev.Payload.Length;
    }

    public void Dispose()
    {
        _table.EndAll("shutdown");
        _realSink?.DisposeAsync().AsTask().GetAwaiter().GetResult();
    }
}

/// <summary>BENCH_DIAG=alloc: which types the measured run allocated, from the runtime's
/// allocation sampling (an AllocationTick event about every 100 KB allocated, naming the type
/// that crossed the mark): a statistical picture, enough to see where bytes per exchange go.</summary>
public sealed class AllocationSampler : System.Diagnostics.Tracing.EventListener
{
    private readonly Dictionary<string, long> _bytes = new();
    private long _total;
    private bool _on;

    public AllocationSampler() => _on = true;

    protected override void OnEventSourceCreated(System.Diagnostics.Tracing.EventSource source)
    {
        if (source.Name == "Microsoft-Windows-DotNETRuntime")
            EnableEvents(source, System.Diagnostics.Tracing.EventLevel.Verbose, (System.Diagnostics.Tracing.EventKeywords)0x1); // GC keyword: AllocationTick
    }

    protected override void OnEventWritten(System.Diagnostics.Tracing.EventWrittenEventArgs e)
    {
        if (!_on || e.EventName is null || !e.EventName.StartsWith("GCAllocationTick") || e.Payload is null) return;
        var type = e.PayloadNames!.IndexOf("TypeName") is var t and >= 0 ? e.Payload[t] as string ?? "?" : "?";
        var amount = e.PayloadNames.IndexOf("AllocationAmount64") is var a and >= 0 ? Convert.ToInt64(e.Payload[a]) : 100_000;
        lock (_bytes)
        {
            _bytes[type] = _bytes.GetValueOrDefault(type) + amount;
            _total += amount;
        }
    }

    public void Report(long exchanges)
    {
        _on = false;
        lock (_bytes)
        {
            Console.Error.WriteLine($"  sampled allocations ({_total / Math.Max(1, exchanges):N0} B/exchange sampled), top types:");
            foreach (var (type, bytes) in _bytes.OrderByDescending(kv => kv.Value).Take(10))
                Console.Error.WriteLine($"    {bytes / (double)Math.Max(1, exchanges),8:N1} B/exchange  {bytes * 100.0 / Math.Max(1, _total),5:N1}%  {type}");
        }
    }
}
