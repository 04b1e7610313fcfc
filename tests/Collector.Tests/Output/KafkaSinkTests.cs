using System.Text;
using System.Text.Json;
using Collector.Configuration;
using Collector.Metrics;
using Collector.Output;
using Collector.Tests.Support;

namespace Collector.Tests.Output;

/// <summary>The sink alone, in this process, against librdkafka's mock cluster over TCP (real
/// Kafka protocol) and read back with kcat: the bounded queue, what it sheds, and that the counts
/// add up. Messages are made up here; the end-to-end tests with probes are KafkaDeliveryTests.</summary>
public sealed class KafkaSinkTests
{
    private static Settings SettingsFor(MockKafkaCluster kafka, int queueMessages = 100_000, int queueMb = 256) => new()
    {
        KafkaBrokers = kafka.Bootstraps,
        KafkaTopic = "sink." + Guid.NewGuid().ToString("N")[..8],
        BatchTime = TimeSpan.FromSeconds(1),
        KafkaQueueMessages = queueMessages,
        KafkaQueueMegabytes = queueMb,
        HeartbeatInterval = TimeSpan.FromHours(1),
    };

    private static async Task Until(Func<bool> condition, string what, double seconds = 30)
    {
        var deadline = DateTime.UtcNow.AddSeconds(seconds);
        while (!condition())
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException("waited in vain for " + what);
            await Task.Delay(100);
        }
    }

    private static byte[] Message(int i, int padding = 0) =>
        Encoding.UTF8.GetBytes(JsonSerializer.Serialize(new { n = i.ToString(), pad = new string('x', padding) }));

    private static List<int> Numbers(IEnumerable<KafkaRecord> records) =>
        records.Where(r => r.Payload.Contains("\"n\"")).Select(r => int.Parse(r.Json().GetProperty("n").GetString()!)).Order().ToList();

    [Fact]
    public async Task Queue_bound_in_messages_sheds_the_oldest_while_the_broker_is_down()
    {
        using var kafka = new MockKafkaCluster();
        kafka.SetDown();
        var metrics = new CollectorMetrics();
        var log = new ListLogger();
        var settings = SettingsFor(kafka, queueMessages: 5);
        var sink = new KafkaSink(settings, metrics, Guid.NewGuid().ToString(), log);
        try
        {
            Assert.False(sink.Reachable);
            for (var i = 0; i < 12; i++) sink.Publish(Message(i), $"h|GET|/m{i}");
            Assert.Equal(12, metrics.KafkaMessages["queued"].Value);
            Assert.Equal(7, metrics.KafkaMessages["shed"].Value);
            Assert.Equal(5, sink.Waiting);
            Assert.Equal(0, metrics.KafkaReachable);

            kafka.SetUp();
            await Until(() => metrics.KafkaMessages["delivered"].Value == 5, "5 delivered");
            Assert.Equal(1, metrics.KafkaReachable);
            Assert.Equal(0, sink.Waiting);
            Assert.Equal(0, metrics.KafkaMessages["failed"].Value);
            Assert.Contains(log.Lines, l => l.Text.Contains("broker reachable"));

            var records = Kcat.Consume(kafka.Bootstraps, settings.KafkaTopic);
            // the five newest are kept, the seven oldest were shed: shed equals what is missing
            Assert.Equal([7, 8, 9, 10, 11], Numbers(records));
            Assert.All(records.Where(r => r.Payload.Contains("\"n\"")), r =>
                Assert.Equal($"h|GET|/m{r.Json().GetProperty("n").GetString()}", r.Header(KafkaSink.CollectionDetailsHeader)));
            Assert.Single(records, r => r.Payload == KafkaSink.KafkaInitMessage);
        }
        finally
        {
            await sink.DisposeAsync();
        }
    }

    [Fact]
    public async Task Queue_bound_in_megabytes_sheds_the_oldest()
    {
        using var kafka = new MockKafkaCluster();
        kafka.SetDown();
        var metrics = new CollectorMetrics();
        var settings = SettingsFor(kafka, queueMb: 1);
        var sink = new KafkaSink(settings, metrics, Guid.NewGuid().ToString(), new ListLogger());
        try
        {
            // 300 kB each: three fit in 1 MiB, the fourth and fifth push the two oldest out
            for (var i = 0; i < 5; i++) sink.Publish(Message(i, 300_000), null);
            Assert.Equal(2, metrics.KafkaMessages["shed"].Value);
            Assert.Equal(3, sink.Waiting);
            kafka.SetUp();
            await Until(() => metrics.KafkaMessages["delivered"].Value == 3, "3 delivered");
            Assert.Equal([2, 3, 4], Numbers(Kcat.Consume(kafka.Bootstraps, settings.KafkaTopic)));
        }
        finally
        {
            await sink.DisposeAsync();
        }
    }

    [Fact]
    public async Task Messages_wait_for_a_broker_that_is_down_at_start_and_drain_without_duplicates()
    {
        using var kafka = new MockKafkaCluster();
        kafka.SetDown();
        var metrics = new CollectorMetrics();
        var settings = SettingsFor(kafka);
        var sink = new KafkaSink(settings, metrics, Guid.NewGuid().ToString(), new ListLogger());
        try
        {
            for (var i = 0; i < 50; i++) sink.Publish(Message(i), null);
            await Task.Delay(2000);
            Assert.Equal(50, sink.Waiting);
            Assert.Equal(0, metrics.KafkaMessages["delivered"].Value);
            kafka.SetUp();
            await Until(() => metrics.KafkaMessages["delivered"].Value == 50, "50 delivered");
            Assert.Equal(Enumerable.Range(0, 50).ToList(), Numbers(Kcat.Consume(kafka.Bootstraps, settings.KafkaTopic)));
            Assert.Equal(0, metrics.KafkaMessages["shed"].Value + metrics.KafkaMessages["failed"].Value);
        }
        finally
        {
            await sink.DisposeAsync();
        }
    }

    [Fact]
    public async Task Flush_sends_lingering_messages_at_once()
    {
        using var kafka = new MockKafkaCluster();
        var metrics = new CollectorMetrics();
        var settings = SettingsFor(kafka) with { BatchTime = TimeSpan.FromSeconds(300) };
        var sink = new KafkaSink(settings, metrics, Guid.NewGuid().ToString(), new ListLogger());
        try
        {
            await Until(() => sink.Reachable == true, "the broker to be reachable");
            for (var i = 0; i < 10; i++) sink.Publish(Message(i), null);
            await Task.Delay(1500);
            Assert.Equal(10, sink.Waiting); // lingering: linger.ms is 300 s
            var started = DateTime.UtcNow;
            var left = await sink.FlushAsync(TimeSpan.FromSeconds(20));
            Assert.Equal(0, left);
            Assert.True(DateTime.UtcNow - started < TimeSpan.FromSeconds(10));
            Assert.Equal(10, metrics.KafkaMessages["delivered"].Value);
            Assert.Equal(Enumerable.Range(0, 10).ToList(), Numbers(Kcat.Consume(kafka.Bootstraps, settings.KafkaTopic)));
        }
        finally
        {
            await sink.DisposeAsync();
        }
    }

    [Fact]
    public async Task Flush_with_the_broker_down_reports_what_was_not_flushed()
    {
        using var kafka = new MockKafkaCluster();
        kafka.SetDown();
        var metrics = new CollectorMetrics();
        var log = new ListLogger();
        var sink = new KafkaSink(SettingsFor(kafka), metrics, Guid.NewGuid().ToString(), log);
        for (var i = 0; i < 4; i++) sink.Publish(Message(i), null);
        var left = await sink.FlushAsync(TimeSpan.FromSeconds(2));
        Assert.Equal(4, left);
        Assert.Contains(log.Lines, l => l.Text.Contains("4 not flushed"));
        var disposing = sink.DisposeAsync().AsTask();
        Assert.Same(disposing, await Task.WhenAny(disposing, Task.Delay(TimeSpan.FromSeconds(20))));
    }
}
