using System.Buffers;
using System.Diagnostics;
using Collector.Connections;
using Collector.Events;
using Collector.Http;
using Collector.Metrics;
using Collector.Output;

namespace Collector.Bench;

/// <summary>`--micro`: the cost of single stages on one exchange, for profiling.</summary>
public static class Micro
{
    public static void Run(string? only = null)
    {
        var t = Traffic.Plain(4096, 1, StreamDirection.Ingress);
        HttpExchange? kept = null;
        var table = new ConnectionTable(new ReassemblyLimits(TimeSpan.FromSeconds(30), 4096, 1L << 30, new HttpLimits()),
            new CollectorMetrics(), x => kept = x);
        ulong pos0 = 0, pos1 = 0, now = 1;
        void Feed(uint fd)
        {
            foreach (var ev in t.Events)
            {
                ref var pos = ref ev.Direction == StreamDirection.Egress ? ref pos0 : ref pos1;
                var h = new DataEventHeader
                {
                    Header = new EventHeader { TimestampNs = now++, Type = EventType.Data, Tgid = 1, Fd = fd, Generation = 1 },
                    Position = pos, DataLength = (uint)ev.Payload.Length, Direction = ev.Direction,
                };
                pos += (ulong)ev.Payload.Length;
                table.OnData(h, ev.Payload);
            }
        }
        Feed(3);
        var x = kept!;
        var id = new AktoIdentity("1000000", "0", Guid.NewGuid().ToString(), []);
        var buffer = new MessageBuffer(1 << 16);
        if (only == "huffman")
        {
            // typical Huffman-coded header values: a request id, a path, a user agent, a date
            var samples = new[] { "5f0c4a8e-0001-4b1e-9f0d-00000000f7a3", "/api/v1/items/1234?page=2&size=50", "grpc-go/1.60.1", "Tue, 25 Nov 2025 10:01:07 GMT" }
                .Select(v => Collector.Bench.HpackEncoder.HuffmanBytes(System.Text.Encoding.ASCII.GetBytes(v))).ToArray();
            var dst = new byte[256];
            var chars = samples.Sum(s => Collector.Http2.Huffman.Decode(s, dst));
            Time($"Huffman.Decode of 4 header values ({chars} characters)", 2_000_000, () => { foreach (var s in samples) Collector.Http2.Huffman.Decode(s, dst); });
            return;
        }
        if (only is "sensitive" or "pii" or "pii-mask" or "sensitive-small")
        {
            // the classify-and-mask step alone on one exchange, with the default policy (pii-mask:
            // the bench's mask policy, every finding of the PII body masked with its keyed hash)
            var pii = only is "pii" or "pii-mask";
            var policy = only == "pii-mask" ? Program.MaskPolicy : Collector.Sensitive.SensitivePolicy.Default;
            if (only != "sensitive")
            {
                t = pii ? Traffic.Pii(4096, 1, StreamDirection.Ingress) : Traffic.Plain(16, 1, StreamDirection.Ingress);
                pos0 = pos1 = 0; // a new connection's streams start at 0
                Feed(4);
                x = kept!;
            }
            var parts = new MessageParts();
            var classifier = new Collector.Sensitive.SensitiveClassifier(new SensitiveMetrics(500), "bench-mask-key-0123456789"u8.ToArray());
            AktoMessage.Decode(x, 262144);
            Time($"AktoMessage.Write ({x.Response.BodyLength} B body)", 200_000, () => { buffer.ResetWrittenCount(); AktoMessage.Write(buffer, x, id, 1, 262144); });
            // 2M calls: after 200k the classifier's methods were not all at tier 1 yet (the
            // 16-byte row read 3.4 us at 200k and 1.2 us at 2M)
            Time(only == "pii-mask" ? "Classify, mask policy" : "Classify, default policy", 2_000_000, () =>
            {
                AktoMessage.Prepare(parts, x, id);
                classifier.Classify(x, parts, policy, 262144);
                parts.Release();
            });
            var responseBody = x.Response.Body.ToArray();
            var found = new List<Collector.Sensitive.ValueMatch>();
            Time("ValueScanner.Scan of the response body", 200_000, () =>
            {
                found.Clear();
                Collector.Sensitive.ValueScanner.Scan(responseBody, Collector.Sensitive.KeyHint.None, Collector.Sensitive.ValueKind.JsonEscaped,
                    Collector.Sensitive.ValueScanner.AllBuiltIns, found, classifier);
            });
            Console.WriteLine($"{found.Count} matches in the body");
            if (only == "sensitive-small") return;
            // 256 bodies in turn, as the bench's connections send them: one body over and over lets
            // the branch predictor learn it, and hides the misses of caches sized for real traffic
            var xs = new List<HttpExchange>();
            for (var v = 1; v <= 256; v++)
            {
                t = pii ? Traffic.Pii(4096, v, StreamDirection.Ingress) : Traffic.Plain(4096, v, StreamDirection.Ingress);
                pos0 = pos1 = 0;
                Feed((uint)(10 + v));
                AktoMessage.Decode(kept!, 262144);
                xs.Add(kept!);
            }
            var k = 0;
            Time("Classify, 256 variants in turn", 200_000, () =>
            {
                var xv = xs[k++ & 255];
                AktoMessage.Prepare(parts, xv, id);
                classifier.Classify(xv, parts, policy, 262144);
                parts.Release();
            });
            return;
        }
        if (only == "reassembly") { Time("reassembly of one exchange (3 events)", 2_000_000, () => { Feed(3); kept!.Dispose(); }); return; }
        Time("AktoMessage.Write (4 KiB JSON body)", 200_000, () => { buffer.ResetWrittenCount(); AktoMessage.Write(buffer, x, id, 1, 262144); });
        Time("reassembly of one exchange (3 events)", 200_000, () => { Feed(3); kept!.Dispose(); });
        var details = new MessageBuffer(512);
        Time("CollectionDetails", 200_000, () => { details.ResetWrittenCount(); AktoMessage.CollectionDetails(x, details); });
        var body = x.Response.Body.ToArray();
        var writer = new MessageBuffer(1 << 16);
        Time("JSON escaping of the 4 KiB body", 200_000, () => { writer.ResetWrittenCount(); AktoMessage.EscapeForBench(writer, body); });
    }

    private static void Time(string what, int n, Action a)
    {
        for (var i = 0; i < n / 10; i++) a();
        var alloc = GC.GetAllocatedBytesForCurrentThread();
        var cpu = Process.GetCurrentProcess().TotalProcessorTime;
        var sw = Stopwatch.StartNew();
        // in 200 batches: the fastest batch (and the median one) is the figure least moved by other
        // work on a shared machine, the mean takes every preemption in
        var batches = new double[200];
        for (var batch = 0; batch < batches.Length; batch++)
        {
            var t0 = Stopwatch.GetTimestamp();
            for (var i = 0; i < n / batches.Length; i++) a();
            batches[batch] = Stopwatch.GetElapsedTime(t0).TotalMilliseconds * 1e6 / (n / batches.Length);
        }
        Array.Sort(batches);
        sw.Stop();
        var cpuNs = (Process.GetCurrentProcess().TotalProcessorTime - cpu).TotalMilliseconds * 1e6 / n;
        Console.WriteLine($"{what}: {sw.Elapsed.TotalMilliseconds * 1e6 / n:N0} ns wall, {cpuNs:N0} ns CPU, batches of {n / batches.Length}: fastest {batches[0]:N0} ns, median {batches[batches.Length / 2]:N0} ns, " +
                          $"{(GC.GetAllocatedBytesForCurrentThread() - alloc) / (double)n:N0} B allocated");
    }
}
