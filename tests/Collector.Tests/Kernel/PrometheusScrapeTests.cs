using System.Text.Json;
using System.Text.RegularExpressions;
using Collector.Tests.Operations;
using Collector.Tests.Support;

namespace Collector.Tests.Kernel;

/// <summary>A real Prometheus server scrapes the running collector while curl talks to nginx; the
/// test asks Prometheus, not the collector, what it saw.</summary>
[Collection("kernel")]
public sealed class PrometheusScrapeTests : IAsyncLifetime
{
    private Nginx _nginx = null!;
    private CollectorProcess _collector = null!;
    private PrometheusServer _prometheus = null!;

    public async Task InitializeAsync()
    {
        _nginx = new Nginx();
        File.WriteAllText(Path.Combine(_nginx.Www, "scraped.txt"), "scraped\n");
        _collector = await CollectorProcess.StartAsync(new Dictionary<string, string> { ["TRACE_COMMS"] = "curl,nginx" });
        _prometheus = new PrometheusServer("collector", $"127.0.0.1:{_collector.MetricsPort}");
        await _prometheus.WaitReadyAsync(TimeSpan.FromSeconds(30));
    }

    public async Task DisposeAsync()
    {
        _prometheus.Dispose();
        await _collector.DisposeAsync();
        _nginx.Dispose();
    }

    [Fact]
    public async Task Prometheus_scrapes_the_collector_and_sees_the_exchange_counter_move()
    {
        const string emitted = "sum(collector_exchanges_emitted_total{job=\"collector\"})";
        // the first scrape: the target is up and the counter has a value before our traffic
        var up = await _prometheus.WaitForValueAsync("up{job=\"collector\"}", v => v == 1, TimeSpan.FromSeconds(30));
        Assert.True(up == 1, $"up is {up}; {_collector.Status}");
        var before = await _prometheus.WaitForValueAsync(emitted, v => v >= 0, TimeSpan.FromSeconds(30));
        Assert.False(double.IsNaN(before), "Prometheus has no collector_exchanges_emitted_total:\n" + _prometheus.Log);

        var id = Guid.NewGuid().ToString("N");
        for (var i = 0; i < 5; i++)
        {
            Assert.Equal("scraped\n", Shell.Check("curl", $"-s --fail http://127.0.0.1:{_nginx.PlainPort}/scraped.txt?prom={id}-{i}"));
            Assert.Equal("scraped\n", Shell.Check("curl", $"-sk --fail https://127.0.0.1:{_nginx.TlsPort}/scraped.txt?prom={id}-tls-{i}"));
        }
        // 10 requests, each seen by curl and by nginx
        var ours = await _collector.WaitForAsync(m => m.GetProperty("path").GetString()!.Contains(id), 20);
        Assert.Equal(20, ours.Count);
        var local = await _collector.MetricAsync("collector_exchanges_emitted_total{direction=\"inbound\"}") +
                    await _collector.MetricAsync("collector_exchanges_emitted_total{direction=\"outbound\"}");
        Assert.True(local >= before + 20, $"collector counts {local}, Prometheus had {before} before 20 more");

        var after = await _prometheus.WaitForValueAsync(emitted, v => v >= local, TimeSpan.FromSeconds(30));
        Assert.True(after >= before + 20, $"Prometheus saw {before} then {after}");

        // the series Prometheus stored carry the labels the dashboard groups by
        var byDirection = await _prometheus.VectorAsync("collector_exchanges_emitted_total{job=\"collector\"}");
        Assert.Contains(byDirection, s => s.Labels["direction"] == "inbound" && s.Value >= 10);
        Assert.Contains(byDirection, s => s.Labels["direction"] == "outbound" && s.Value >= 10);
        var sources = await _prometheus.WaitForValueAsync(
            "sum(collector_events_read_total{job=\"collector\",source=\"openssl\"})", v => v > 0, TimeSpan.FromSeconds(15));
        Assert.True(sources > 0, "no openssl events in Prometheus");
        var latency = await _prometheus.WaitForValueAsync(
            "sum(collector_exchange_latency_seconds_count{job=\"collector\"})", v => v >= 20, TimeSpan.FromSeconds(15));
        Assert.True(latency >= 20, $"latency histogram count {latency}");
        var host = await _prometheus.VectorAsync($"collector_host_requests_total{{job=\"collector\",host=\"127.0.0.1:{_nginx.TlsPort}\"}}");
        Assert.True(Assert.Single(host).Value >= 10);

        // every scrape parsed: a malformed exposition would mark the target down with an error
        var target = Assert.Single(await _prometheus.TargetsAsync(), t => t.GetProperty("labels").GetProperty("job").GetString() == "collector");
        Assert.Equal("up", target.GetProperty("health").GetString());
        Assert.Equal("", target.GetProperty("lastError").GetString());
    }

    [Fact]
    public async Task Every_dashboard_query_runs_in_Prometheus_and_every_metric_it_uses_is_scraped()
    {
        Shell.Check("curl", $"-s --fail http://127.0.0.1:{_nginx.PlainPort}/scraped.txt?dash={Guid.NewGuid():N}");
        var up = await _prometheus.WaitForValueAsync("up{job=\"collector\"}", v => v == 1, TimeSpan.FromSeconds(30));
        Assert.True(up == 1, $"up is {up}; {_collector.Status}");
        // wait until the scrape after the traffic has been stored
        var local = await _collector.MetricAsync("collector_host_requests_total{host=\"127.0.0.1:" + _nginx.PlainPort + "\"}");
        Assert.True(local >= 1);
        await _prometheus.WaitForValueAsync($"sum(collector_host_requests_total{{host=\"127.0.0.1:{_nginx.PlainPort}\"}})",
            v => v >= local, TimeSpan.FromSeconds(20));

        // the names Prometheus has series of, and the families it read HELP/TYPE of (a family whose
        // label values have not happened yet, e.g. HTTP drops, has no series but is exposed)
        var series = (await _prometheus.VectorAsync("count by (__name__) ({job=\"collector\",__name__=~\"collector_.+\"})"))
            .Select(s => s.Labels["__name__"]).ToHashSet();
        var families = await _prometheus.MetadataAsync();
        Assert.Contains("collector_exchanges_emitted_total", series);
        bool Exposed(string metric) =>
            series.Contains(metric) || families.ContainsKey(metric) ||
            new[] { "_bucket", "_sum", "_count" }.Any(sfx => metric.EndsWith(sfx) &&
                families.TryGetValue(metric[..^sfx.Length], out var type) && type == "histogram");
        var dashboard = Dashboard.Load();
        Assert.NotEmpty(dashboard.Queries);
        foreach (var metric in dashboard.Metrics)
            Assert.True(Exposed(metric), $"the dashboard queries {metric}, which Prometheus did not scrape (series: {string.Join(", ", series.Order())})");
        // the counters the overview panels rate() over have series from the first scrape
        foreach (var metric in new[] { "collector_exchanges_emitted_total", "collector_events_read_total", "collector_kafka_messages_total",
                     "collector_kernel_drops_total", "collector_process_memory_bytes", "collector_probes_attached" })
            Assert.Contains(metric, series);

        foreach (var query in dashboard.Queries)
        {
            var promql = query.Replace("$__rate_interval", "1m").Replace("$__range", "5m").Replace("$instance", ".*");
            var answer = await _prometheus.QueryAsync(promql);
            Assert.True(answer.GetProperty("status").GetString() == "success", $"{promql}: {answer}");
        }
    }
}
