using System.Diagnostics;
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
            for (var i = 0; i < 12; i++) sink.Publish(Message(i), System.Text.Encoding.UTF8.GetBytes($"h|GET|/m{i}"));
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
            for (var i = 0; i < 5; i++) sink.Publish(Message(i, 300_000), default);
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
            for (var i = 0; i < 50; i++) sink.Publish(Message(i), default);
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
            for (var i = 0; i < 10; i++) sink.Publish(Message(i), default);
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
        for (var i = 0; i < 4; i++) sink.Publish(Message(i), default);
        var left = await sink.FlushAsync(TimeSpan.FromSeconds(2));
        Assert.Equal(4, left);
        Assert.Contains(log.Lines, l => l.Text.Contains("4 not flushed"));
        var disposing = sink.DisposeAsync().AsTask();
        Assert.Same(disposing, await Task.WhenAny(disposing, Task.Delay(TimeSpan.FromSeconds(20))));
    }

    [Fact]
    public void Producer_config_follows_the_settings()
    {
        var s = new Settings
        {
            KafkaBrokers = "k1:9092,k2:9092", BatchSize = 250, BatchTime = TimeSpan.FromSeconds(7), KafkaMaxMessageBytes = 500_000,
            PodName = "collector-abc",
        };
        var c = KafkaSink.ProducerConfig(s, 5000, 64 << 20);
        Assert.Equal("k1:9092,k2:9092", c["bootstrap.servers"]);
        Assert.Equal("all", c["acks"]);
        Assert.Equal("true", c["enable.idempotence"]);
        Assert.Equal("lz4", c["compression.type"]);
        Assert.Equal("7000", c["linger.ms"]);
        Assert.Equal("250", c["batch.num.messages"]);
        Assert.Equal("500000", c["message.max.bytes"]);
        Assert.True(long.Parse(c["message.timeout.ms"]) >= 300_000);
        Assert.Equal("plaintext", c["security.protocol"]);
        Assert.Equal("akto-traffic-collector-collector-abc", c["client.id"]);
        Assert.False(c.ContainsKey("sasl.username"));

        var tlsSasl = KafkaSink.ProducerConfig(s with
        {
            KafkaUseTls = true, KafkaCaCertPath = "/etc/hosts", KafkaAuth = true, KafkaUsername = "user", KafkaPassword = "secret",
        }, 5000, 64 << 20);
        Assert.Equal("sasl_ssl", tlsSasl["security.protocol"]);
        Assert.Equal("/etc/hosts", tlsSasl["ssl.ca.location"]);
        Assert.Equal("true", tlsSasl["enable.ssl.certificate.verification"]);
        Assert.Equal("PLAIN", tlsSasl["sasl.mechanisms"]);
        Assert.Equal("user", tlsSasl["sasl.username"]);
        Assert.Equal("secret", tlsSasl["sasl.password"]);
        var described = KafkaSink.Describe(tlsSasl);
        Assert.DoesNotContain("secret", described);
        Assert.Contains("sasl.password=***", described);

        var insecure = KafkaSink.ProducerConfig(s with { KafkaUseTls = true, KafkaInsecureSkipVerify = true, KafkaCaCertPath = "/nonexistent" }, 5000, 64 << 20);
        Assert.Equal("ssl", insecure["security.protocol"]);
        Assert.Equal("false", insecure["enable.ssl.certificate.verification"]);
        Assert.False(insecure.ContainsKey("ssl.ca.location"));
        Assert.Equal("sasl_plaintext", KafkaSink.ProducerConfig(s with { KafkaAuth = true, KafkaUsername = "u", KafkaPassword = "p" }, 1, 1)["security.protocol"]);
    }

    [Fact]
    public async Task Sasl_plain_is_what_the_producer_speaks_when_auth_is_on()
    {
        // the mock broker does not implement SASL: the producer's attempt shows on the wire as a
        // refused handshake, and the messages wait instead of being lost
        using var kafka = new MockKafkaCluster();
        var metrics = new CollectorMetrics();
        var log = new ListLogger();
        var settings = SettingsFor(kafka) with { KafkaAuth = true, KafkaUsername = "collector", KafkaPassword = "pw" };
        var sink = new KafkaSink(settings, metrics, Guid.NewGuid().ToString(), log);
        try
        {
            sink.Publish(Message(1), default);
            await Until(() => log.Lines.Any(l => l.Text.Contains("SASL", StringComparison.Ordinal)), "a SASL error");
            Assert.Contains(log.Lines, l => l.Text.Contains("mechanism PLAIN"));
            Assert.False(sink.Reachable);
            Assert.Equal(1, sink.Waiting);
            Assert.Equal(0, metrics.KafkaMessages["delivered"].Value);
        }
        finally
        {
            await sink.DisposeAsync();
        }
    }

    public static IEnumerable<object[]> TlsCases() =>
    [
        // CA given, verification on: the handshake with the broker's own certificate succeeds
        ["server", false, true],
        // another CA: the broker's certificate is refused
        ["other", false, false],
        // verification off: any certificate is taken
        ["other", true, true],
    ];

    /// <summary>A real TLS peer (openssl s_server with a certificate made for the test): the
    /// Kafka request arrives as plaintext after the handshake only when the certificate is
    /// accepted; s_server prints what it received.</summary>
    [Theory]
    [MemberData(nameof(TlsCases))]
    public async Task Tls_verifies_the_broker_with_the_configured_ca(string ca, bool skipVerify, bool handshakeSucceeds)
    {
        var serverDir = Repo.TempDir("tls-server");
        Tls.MakeSelfSigned(serverDir);
        var otherDir = Repo.TempDir("tls-other");
        Tls.MakeSelfSigned(otherDir);
        var port = Repo.FreePort();
        using var server = Process.Start(new ProcessStartInfo("openssl",
            $"s_server -accept 127.0.0.1:{port} -cert {serverDir}/cert.pem -key {serverDir}/key.pem -quiet")
        {
            RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true, UseShellExecute = false,
        })!;
        // what arrives is binary Kafka protocol without line ends: read the bytes as they come
        var received = new StringBuilder();
        var reader = Task.Run(async () =>
        {
            var buffer = new byte[4096];
            int n;
            while ((n = await server.StandardOutput.BaseStream.ReadAsync(buffer)) > 0)
                lock (received) received.Append(Encoding.Latin1.GetString(buffer, 0, n));
        });
        server.BeginErrorReadLine();
        Support.Nginx.WaitForPort("127.0.0.1", port);

        var metrics = new CollectorMetrics();
        var log = new ListLogger();
        var settings = new Settings
        {
            KafkaBrokers = $"127.0.0.1:{port}", KafkaUseTls = true, KafkaInsecureSkipVerify = skipVerify,
            KafkaCaCertPath = Path.Combine(ca == "server" ? serverDir : otherDir, "cert.pem"),
            HeartbeatInterval = TimeSpan.FromHours(1), PodName = "tls-" + Guid.NewGuid().ToString("N")[..8],
        };
        var sink = new KafkaSink(settings, metrics, Guid.NewGuid().ToString(), log);
        try
        {
            string Received() { lock (received) return received.ToString(); }
            if (handshakeSucceeds)
                await Until(() => Received().Contains(settings.PodName), "the Kafka request to arrive through TLS");
            else
            {
                await Until(() => log.Lines.Any(l => l.Text.Contains("certificate verify failed")), "the certificate to be refused");
                Assert.DoesNotContain(settings.PodName, Received());
            }
            Assert.False(sink.Reachable); // s_server is no Kafka broker
        }
        finally
        {
            await sink.DisposeAsync();
            server.Kill(entireProcessTree: true);
            await server.WaitForExitAsync();
            await reader;
        }
    }
}
