using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Collector.Output;
using Collector.Tests.Kernel;
using Collector.Tests.Support;

namespace Collector.Tests.Output;

/// <summary>Acceptance for delivery to the processor: the built collector with its probes in the
/// real kernel, a real nginx and curl, librdkafka's mock cluster as the broker (the Kafka protocol
/// over loopback TCP), and kcat as an independent consumer. Every assertion keys on request paths
/// that carry this test's own id, since other collectors may trace curl and nginx at the same time.</summary>
[Collection("kernel")]
public sealed class KafkaDeliveryTests : IDisposable
{
    private const string Topic = "akto.api.logs";
    private const string HeartbeatTopic = "akto.daemonset.producer.heartbeats";
    private readonly Nginx _nginx = new();
    private readonly MockKafkaCluster _kafka = new();
    private readonly string _id = Guid.NewGuid().ToString("N");

    public void Dispose()
    {
        _nginx.Dispose();
        _kafka.Dispose();
    }

    /// <summary>nginxOnly: trace only this test's nginx (its master and worker pids), so that
    /// counts are exact even while other tests run curl and nginx: one exchange per request, the
    /// server's side.</summary>
    private async Task<CollectorProcess> StartCollector(Dictionary<string, string>? extra = null, bool waitReachable = true,
        bool nginxOnly = false)
    {
        var env = new Dictionary<string, string>
        {
            ["AKTO_KAFKA_BROKER_URL"] = _kafka.Bootstraps,
            ["AKTO_TRAFFIC_BATCH_TIME_SECS"] = "1",
        };
        if (nginxOnly) env["TRACE_PIDS"] = NginxPids();
        else env["TRACE_COMMS"] = "curl,nginx";
        foreach (var (k, v) in extra ?? []) env[k] = v;
        var collector = await CollectorProcess.StartAsync(env);
        if (waitReachable) await WaitMetric(collector, "collector_kafka_reachable", v => v == 1);
        return collector;
    }

    private string NginxPids()
    {
        var master = File.ReadAllText(Path.Combine(_nginx.Dir, "nginx.pid")).Trim();
        var children = File.ReadAllText($"/proc/{master}/task/{master}/children").Split(' ', StringSplitOptions.RemoveEmptyEntries);
        Assert.NotEmpty(children);
        return string.Join(",", children.Prepend(master));
    }

    private static async Task<double> WaitMetric(CollectorProcess c, string sample, Func<double, bool> condition, double seconds = 30)
    {
        var deadline = DateTime.UtcNow.AddSeconds(seconds);
        while (true)
        {
            double v;
            try
            {
                v = await c.MetricAsync(sample);
            }
            catch (HttpRequestException e)
            {
                throw new InvalidOperationException($"/metrics did not answer ({e.Message}); collector log:\n{c.Log}", e);
            }
            if (condition(v)) return v;
            if (DateTime.UtcNow > deadline)
                throw new TimeoutException($"{sample} stayed at {v}\n{c.Log}");
            await Task.Delay(200);
        }
    }

    private static Task<double> Kafka(CollectorProcess c, string result) => c.MetricAsync($"collector_kafka_messages_total{{result=\"{result}\"}}");

    private string Get(string scheme, string route, int n)
    {
        var port = scheme == "http" ? _nginx.PlainPort : _nginx.TlsPort;
        var path = $"{route}?id={_id}-{n}";
        Shell.Check("curl", $"-sk --fail -o /dev/null {scheme}://127.0.0.1:{port}{path}");
        return path;
    }

    private string Post(string scheme, string json, int n)
    {
        var port = scheme == "http" ? _nginx.PlainPort : _nginx.TlsPort;
        var path = $"/echo?id={_id}-{n}";
        Shell.Check("curl", $"-sk --fail -o /dev/null -X POST -H content-type:application/json --data-binary @- {scheme}://127.0.0.1:{port}{path}", stdin: json);
        return path;
    }

    private static bool IsTraffic(KafkaRecord r) => r.Payload.StartsWith("{\"method\"", StringComparison.Ordinal);

    private static string PathOf(KafkaRecord r) => r.Json().GetProperty("path").GetString()!;

    private List<KafkaRecord> Mine(IEnumerable<KafkaRecord> records) =>
        records.Where(r => IsTraffic(r) && PathOf(r).Contains(_id)).ToList();

    private Task<List<KafkaRecord>> WaitForMine(int count, double seconds = 30) =>
        Kcat.WaitForAsync(_kafka.Bootstraps, Topic, r => IsTraffic(r) && PathOf(r).Contains(_id), count, TimeSpan.FromSeconds(seconds));

    /// <summary>As the processor reads the header: host|method|path, the path being the rest.</summary>
    private static (string Host, string Method, string Path) ParseCollectionDetails(string value)
    {
        var parts = value.Split('|', 3);
        Assert.Equal(3, parts.Length);
        return (parts[0], parts[1], parts[2]);
    }

    private static void AssertEachPathTwiceOncePerSide(IReadOnlyCollection<KafkaRecord> records, IEnumerable<string> paths)
    {
        foreach (var path in paths)
        {
            var forPath = records.Where(r => PathOf(r) == path).Select(r => r.Json()).ToList();
            Assert.True(forPath.Count == 2, $"{path}: {forPath.Count} records, expected one per side");
            Assert.Single(forPath, m => m.GetProperty("direction").GetString() == "1" && m.GetProperty("process_name").GetString() == "nginx");
            Assert.Single(forPath, m => m.GetProperty("direction").GetString() == "2" && m.GetProperty("process_name").GetString() == "curl");
        }
    }

    [Fact]
    public async Task Every_exchange_arrives_once_in_the_processors_format_in_lz4_batches()
    {
        await using var collector = await StartCollector();
        var json = "{\"user\":\"ada\",\"roles\":[\"admin\",\"dev\"],\"n\":42}";
        File.WriteAllText(Path.Combine(_nginx.Www, "known.txt"), "a known file\n");
        var paths = new List<string>();
        var n = 0;
        foreach (var scheme in new[] { "http", "https" })
        {
            paths.Add(Get(scheme, "/known.txt", n++));
            paths.Add(Post(scheme, json, n++));
            paths.Add(Get(scheme, "/json", n++));
        }

        var found = await WaitForMine(paths.Count * 2);
        Assert.Equal(paths.Count * 2, found.Count);
        await Task.Delay(3000); // anything sent twice would be there by now
        var (all, fetchLog) = Kcat.ConsumeWithLog(_kafka.Bootstraps, Topic, debugFetch: true);
        var mine = Mine(all);
        Assert.Equal(paths.Count * 2, mine.Count);
        AssertEachPathTwiceOncePerSide(mine, paths);

        foreach (var r in mine)
        {
            var m = r.Json();
            WalkingSkeletonTests.AssertAllStrings(m);
            Assert.Null(r.Key);
            var headers = WalkingSkeletonTests.ParseHeaders(m.GetProperty("requestHeaders").GetString()!);
            WalkingSkeletonTests.ParseHeaders(m.GetProperty("responseHeaders").GetString()!);
            var details = r.Header(KafkaSink.CollectionDetailsHeader);
            Assert.NotNull(details);
            var (host, method, path) = ParseCollectionDetails(details);
            Assert.Equal(headers["host"], host);
            Assert.Equal(m.GetProperty("method").GetString(), method);
            Assert.Equal(m.GetProperty("path").GetString(), path);
            if (method == "POST") Assert.Equal(json, m.GetProperty("requestPayload").GetString());
        }

        // the connection test went out once, on the traffic topic
        Assert.Single(all, r => r.Payload == KafkaSink.KafkaInitMessage);

        // LZ4: the consumer's fetch log names the codec of every MessageSet it read
        var codecs = MessageSetCodecs(fetchLog, Topic);
        Assert.NotEmpty(codecs);
        foreach (var r in mine)
        {
            var set = codecs.SingleOrDefault(s => s.Partition == r.Partition && s.First <= r.Offset && r.Offset <= s.Last);
            Assert.True(set != default, $"no MessageSet in the fetch log holds partition {r.Partition} offset {r.Offset}:\n{fetchLog}");
            Assert.Equal("lz4", set.Codec);
        }

        Assert.Equal(0, await Kafka(collector, "failed"));
        Assert.Equal(0, await Kafka(collector, "shed"));
        Assert.True(await Kafka(collector, "delivered") >= mine.Count);
        Assert.Contains("compression.type=lz4", collector.Log);
        Assert.Contains("acks=all", collector.Log);
        Assert.Contains("enable.idempotence=true", collector.Log);
    }

    /// <summary>librdkafka logs, for each MessageSet a consumer fetched: "Enqueue N message(s) (...)
    /// on TOPIC [PARTITION] fetch queue (..., last_offset L, ..., CODEC)".</summary>
    private static List<(int Partition, long First, long Last, string Codec)> MessageSetCodecs(string log, string topic)
    {
        var sets = new List<(int, long, long, string)>();
        var rx = new Regex(@"Enqueue (\d+) message\(s\) \(.*?\) on (\S+) \[(\d+)\] fetch queue \(.*last_offset (\d+),.*, (\w+)\)\s*$");
        foreach (var line in log.Split('\n'))
        {
            var m = rx.Match(line);
            if (!m.Success || m.Groups[2].Value != topic) continue;
            var count = long.Parse(m.Groups[1].Value);
            var last = long.Parse(m.Groups[4].Value);
            sets.Add((int.Parse(m.Groups[3].Value), last - count + 1, last, m.Groups[5].Value));
        }
        return sets;
    }

    [Fact]
    public async Task Heartbeats_arrive_on_the_heartbeat_topic()
    {
        var pod = "collector-test-" + _id[..8];
        await using var collector = await StartCollector(new()
        {
            ["AKTO_HEARTBEAT_INTERVAL_SECS"] = "1",
            ["POD_NAME"] = pod,
            ["NODE_NAME"] = "node-" + _id[..8],
        });
        var path = Get("http", "/json", 0);
        var traffic = await WaitForMine(2);
        Assert.Equal(2, traffic.Count);
        var daemonId = traffic[0].Json().GetProperty("daemonset_id").GetString();
        Assert.True(Guid.TryParse(daemonId, out _));

        var beats = await Kcat.WaitForAsync(_kafka.Bootstraps, HeartbeatTopic, _ => true, 3);
        Assert.True(beats.Count >= 3, $"{beats.Count} heartbeats");
        var now = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        foreach (var b in beats)
        {
            var m = b.Json();
            Assert.All(m.EnumerateObject(), p => Assert.Equal(JsonValueKind.String, p.Value.ValueKind));
            Assert.Equal("heartbeat", m.GetProperty("type").GetString());
            Assert.Equal(daemonId, m.GetProperty("daemonId").GetString());
            Assert.Equal(pod, m.GetProperty("daemonPodName").GetString());
            Assert.Equal("node-" + _id[..8], m.GetProperty("nodeName").GetString());
            Assert.Equal("TRAFFIC_COLLECTOR", m.GetProperty("moduleType").GetString());
            Assert.False(string.IsNullOrWhiteSpace(m.GetProperty("imageVersion").GetString()));
            // the processor does Integer.parseInt(value.toString()): a string of digits
            var ts = long.Parse(m.GetProperty("timestamp").GetString()!);
            Assert.InRange(ts, now - 120, now + 5);
        }
        Assert.Contains(traffic, r => PathOf(r) == path);
    }

    [Fact]
    public async Task Broker_down_then_up_loses_nothing_and_duplicates_nothing()
    {
        await using var collector = await StartCollector();
        var before = Get("http", "/json", 0);
        await WaitForMine(2);

        // down while idle (the mock would not de-duplicate retries of requests cut in flight)
        _kafka.SetDown();
        await WaitMetric(collector, "collector_kafka_reachable", v => v == 0);
        Assert.Contains("broker unreachable", collector.Log);
        var queuedBefore = await Kafka(collector, "queued");
        var during = new List<string>();
        for (var i = 1; i <= 6; i++) during.Add(Get(i % 2 == 0 ? "http" : "https", "/json", i));
        // capture goes on: the exchanges reach the sink and wait there
        await WaitMetric(collector, "collector_kafka_messages_total{result=\"queued\"}", v => v >= queuedBefore + during.Count * 2);
        Assert.True(await collector.MetricAsync("collector_kafka_waiting_messages") >= during.Count * 2);

        _kafka.SetUp();
        await WaitMetric(collector, "collector_kafka_reachable", v => v == 1);
        await WaitMetric(collector, "collector_kafka_waiting_messages", v => v == 0);
        var found = await WaitForMine((during.Count + 1) * 2);
        await Task.Delay(3000);
        var all = Kcat.Consume(_kafka.Bootstraps, Topic);
        var mine = Mine(all);
        Assert.Equal((during.Count + 1) * 2, mine.Count);
        AssertEachPathTwiceOncePerSide(mine, during.Append(before));

        // the counters say so: nothing shed, nothing failed, every traffic record on the topic delivered once
        Assert.Equal(0, await Kafka(collector, "shed"));
        Assert.Equal(0, await Kafka(collector, "failed"));
        Assert.Equal(await Kafka(collector, "queued"), await Kafka(collector, "delivered"));
        Assert.Equal(all.Count(IsTraffic), (int)await Kafka(collector, "delivered"));
        Assert.Single(all, r => r.Payload == KafkaSink.KafkaInitMessage);
        Assert.True(found.Count >= mine.Count);
    }

    [Fact]
    public async Task Queue_bound_exceeded_while_down_sheds_exactly_what_is_missing()
    {
        await using var collector = await StartCollector(new() { ["KAFKA_QUEUE_MESSAGES"] = "5" }, nginxOnly: true);
        _kafka.SetDown();
        await WaitMetric(collector, "collector_kafka_reachable", v => v == 0);
        var paths = new List<string>();
        for (var i = 0; i < 12; i++) paths.Add(Get("http", "/json", i));
        await WaitMetric(collector, "collector_kafka_messages_total{result=\"queued\"}", v => v >= 12);
        Assert.Equal(5, await collector.MetricAsync("collector_kafka_waiting_messages"));
        Assert.Equal(7, await Kafka(collector, "shed"));

        _kafka.SetUp();
        await WaitMetric(collector, "collector_kafka_reachable", v => v == 1);
        await WaitMetric(collector, "collector_kafka_waiting_messages", v => v == 0);
        await Task.Delay(3000);
        var all = Kcat.Consume(_kafka.Bootstraps, Topic);
        var traffic = all.Where(IsTraffic).ToList();
        var mine = Mine(all);
        Assert.Equal(traffic.Count, mine.Count); // only this test's nginx was traced

        // what the collector was given and is not on the topic is exactly what it says it shed
        Assert.Equal(12, await Kafka(collector, "queued"));
        Assert.Equal(0, await Kafka(collector, "failed"));
        Assert.Equal(mine.Count, (int)await Kafka(collector, "delivered"));
        Assert.Equal(12 - mine.Count, (int)await Kafka(collector, "shed"));
        // and the oldest went: the five newest requests are there, once each
        Assert.Equal(paths.Skip(7).Order(), mine.Select(PathOf).Order());
        Assert.All(mine, r => Assert.Equal("1", r.Json().GetProperty("direction").GetString()));
    }

    [Fact]
    public async Task Sigterm_with_messages_lingering_delivers_them_all_and_exits_zero()
    {
        var collector = await StartCollector(new() { ["AKTO_TRAFFIC_BATCH_TIME_SECS"] = "300" });
        try
        {
            var paths = new List<string>();
            for (var i = 0; i < 3; i++) paths.Add(Get(i == 1 ? "https" : "http", "/json", i));
            await WaitMetric(collector, "collector_kafka_waiting_messages", v => v >= 6);
            Assert.Empty(Mine(Kcat.Consume(_kafka.Bootstraps, Topic))); // lingering in the producer (linger.ms = 300 s)

            var started = DateTime.UtcNow;
            var code = await collector.StopAsync(TimeSpan.FromSeconds(40));
            Assert.Equal(0, code);
            Assert.True(DateTime.UtcNow - started < TimeSpan.FromSeconds(25), "the flush waited for linger.ms");
            Assert.Contains("0 not flushed", collector.Log);

            var mine = Mine(Kcat.Consume(_kafka.Bootstraps, Topic));
            Assert.Equal(6, mine.Count);
            AssertEachPathTwiceOncePerSide(mine, paths);
        }
        finally
        {
            await collector.DisposeAsync();
        }
    }

    [Fact]
    public async Task Start_up_does_not_wait_for_the_broker_and_the_connection_test_follows_it()
    {
        _kafka.SetDown();
        await using var collector = await StartCollector(waitReachable: false); // returns when /ready is 200
        Assert.Equal(0, await collector.MetricAsync("collector_kafka_reachable"));
        Assert.Contains("broker not reachable yet", collector.Log);
        using var http = new HttpClient();
        Assert.Equal("ready\nkafka: unreachable\n", await http.GetStringAsync($"http://127.0.0.1:{collector.MetricsPort}/ready"));
        var path = Get("http", "/json", 0);
        await WaitMetric(collector, "collector_kafka_waiting_messages", v => v >= 2);

        _kafka.SetUp();
        await WaitMetric(collector, "collector_kafka_reachable", v => v == 1);
        Assert.Contains("broker reachable", collector.Log);
        Assert.Equal("ready\nkafka: reachable\n", await http.GetStringAsync($"http://127.0.0.1:{collector.MetricsPort}/ready"));
        var mine = await WaitForMine(2);
        AssertEachPathTwiceOncePerSide(mine, [path]);
        await WaitMetric(collector, "collector_kafka_control_messages_total{result=\"init_delivered\"}", v => v == 1);
        Assert.Single(Kcat.Consume(_kafka.Bootstraps, Topic), r => r.Payload == KafkaSink.KafkaInitMessage);
    }

    [Fact]
    public async Task Produce_errors_are_retried_or_counted_by_reason()
    {
        await using var collector = await StartCollector(nginxOnly: true);
        // the connection test and the first heartbeat are out of the way before errors are injected
        await WaitMetric(collector, "collector_kafka_control_messages_total{result=\"heartbeat_delivered\"}", v => v >= 1);
        await WaitMetric(collector, "collector_kafka_control_messages_total{result=\"init_delivered\"}", v => v >= 1);

        // retriable: REQUEST_TIMED_OUT (7), then NOT_ENOUGH_REPLICAS (19) on the next two produce requests
        _kafka.PushRequestErrors(0, 7, 19);
        var retried = Get("http", "/json", 0);
        var first = await WaitForMine(1);
        Assert.Equal([retried], first.Select(PathOf));
        await WaitMetric(collector, "collector_kafka_messages_total{result=\"delivered\"}", v => v == 1);
        Assert.Equal(0, await Kafka(collector, "failed"));

        // permanent: MESSAGE_TOO_LARGE (10) on the next produce request (an error of the request,
        // unlike an authorization error, which librdkafka also applies to the topic for a while)
        _kafka.PushRequestErrors(0, 10);
        var refused = Get("http", "/json", 1);
        await WaitMetric(collector, "collector_kafka_messages_total{result=\"failed\"}", v => v == 1);
        Assert.Equal(1, await collector.MetricAsync("collector_kafka_failures_total{error=\"MsgSizeTooLarge\"}"));
        Assert.Equal(0, await collector.MetricAsync("collector_kafka_waiting_messages"));
        Assert.Contains("MsgSizeTooLarge", collector.Log);

        // and the producer goes on after it
        var after = Get("http", "/json", 2);
        await WaitMetric(collector, "collector_kafka_messages_total{result=\"delivered\"}", v => v == 2);
        await Task.Delay(2000);
        var mine = Mine(Kcat.Consume(_kafka.Bootstraps, Topic));
        Assert.Equal(new[] { retried, after }.Order(), mine.Select(PathOf).Order());
        Assert.DoesNotContain(mine, r => PathOf(r) == refused);
        Assert.Equal(3, await Kafka(collector, "queued"));
    }

    [Fact]
    public async Task A_large_body_is_cut_to_fit_the_maximum_message_size()
    {
        // 40 000 bytes: within what the kernel side captures of one write (4 chunks of 16 KiB), twice the limit
        File.WriteAllText(Path.Combine(_nginx.Www, "big.txt"), new string('b', 40_000));
        await using var collector = await StartCollector(new() { ["KAFKA_MAX_MESSAGE_BYTES"] = "20000" });
        var path = Get("http", "/big.txt", 0);
        var mine = await WaitForMine(2);
        Assert.Equal(2, mine.Count);
        foreach (var r in mine)
        {
            var size = Encoding.UTF8.GetByteCount(r.Payload) + KafkaSink.CollectionDetailsHeader.Length +
                       Encoding.UTF8.GetByteCount(r.Header(KafkaSink.CollectionDetailsHeader) ?? "");
            Assert.True(size <= 20000, $"{size} bytes");
            var m = r.Json();
            var body = m.GetProperty("responsePayload").GetString()!;
            Assert.True(body.Length is > 0 and < 20_000);
            Assert.Equal(new string('b', body.Length), body);
            var headers = WalkingSkeletonTests.ParseHeaders(m.GetProperty("responseHeaders").GetString()!);
            Assert.True(headers.TryGetValue(AktoMessage.TruncatedHeader, out var note), m.GetProperty("responseHeaders").GetString());
            Assert.Contains("wire=40000", note);
            Assert.Equal(path, PathOf(r));
        }
        Assert.Equal(0, await Kafka(collector, "failed"));
    }
}
