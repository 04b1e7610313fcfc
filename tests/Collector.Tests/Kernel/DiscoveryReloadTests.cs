using Collector.Tests.Support;

namespace Collector.Tests.Kernel;

/// <summary>The built collector reads its discovery rules from a file and follows the file's
/// changes while curl talks to nginx: which requests come out changes without a restart.</summary>
[Collection("kernel")]
public sealed class DiscoveryReloadTests : IAsyncLifetime
{
    private const string KeepGreen = """[{"key":{"eq":"x-tenant","ifAbsent":"reject"},"value":{"regex":"^green$"}}]""";
    private const string KeepBlue = """[{"key":{"eq":"x-tenant","ifAbsent":"reject"},"value":{"regex":"^blue$"}}]""";
    private Nginx _nginx = null!;
    private CollectorProcess _collector = null!;
    private string _dir = null!;
    private string RulesFile => Path.Combine(_dir, "rules.json");

    public async Task InitializeAsync()
    {
        _nginx = new Nginx();
        File.WriteAllText(Path.Combine(_nginx.Www, "tenant.txt"), "tenant\n");
        _dir = Repo.TempDir("discovery");
        File.WriteAllText(RulesFile, KeepGreen);
        _collector = await CollectorProcess.StartAsync(new Dictionary<string, string>
        {
            ["TRACE_COMMS"] = "curl,nginx",
            ["AKTO_MODULE_DISCOVERY_CONFIG_PATH"] = RulesFile,
            // both set: the file wins
            ["AKTO_MODULE_DISCOVERY_CONFIG"] = "[]",
        });
    }

    public async Task DisposeAsync()
    {
        await _collector.DisposeAsync();
        _nginx.Dispose();
        Directory.Delete(_dir, recursive: true);
    }

    private string Request(string tenant, string id)
    {
        var path = $"/tenant.txt?rules={id}-{tenant}-{Guid.NewGuid():N}";
        Assert.Equal("tenant\n", Shell.Check("curl", $"-s --fail -H x-tenant:{tenant} http://127.0.0.1:{_nginx.PlainPort}{path}"));
        return path;
    }

    private async Task AssertEmitted(string path) =>
        Assert.Equal(2, (await _collector.WaitForAsync(m => m.GetProperty("path").GetString() == path, 2)).Count);

    /// <summary>A request the rules reject, then one they keep: once the kept one is out and the
    /// filter counter has moved for the rejected one, the rejected one must not be out.</summary>
    private async Task AssertFiltered(string rejectedTenant, string keptTenant, string id)
    {
        var filteredBefore = await _collector.MetricAsync("collector_exchanges_filtered_total{reason=\"discovery_rules\"}");
        var rejected = Request(rejectedTenant, id);
        var kept = Request(keptTenant, id);
        await AssertEmitted(kept);
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (await _collector.MetricAsync("collector_exchanges_filtered_total{reason=\"discovery_rules\"}") < filteredBefore + 2 &&
               DateTime.UtcNow < deadline)
            await Task.Delay(100);
        Assert.True(await _collector.MetricAsync("collector_exchanges_filtered_total{reason=\"discovery_rules\"}") >= filteredBefore + 2);
        Assert.DoesNotContain(_collector.Messages(), m => m.GetProperty("path").GetString() == rejected);
    }

    private async Task WaitForMetric(string sample, double value)
    {
        var deadline = DateTime.UtcNow.AddSeconds(15);
        while (await _collector.MetricAsync(sample) < value && DateTime.UtcNow < deadline) await Task.Delay(200);
        Assert.Equal(value, await _collector.MetricAsync(sample));
    }

    [Fact]
    public async Task Rules_follow_the_file_without_a_restart_and_a_bad_file_keeps_the_old_rules()
    {
        Assert.Contains(_collector.LogLines, l => l.Contains("the file wins"));
        Assert.Equal(1, await _collector.MetricAsync("collector_discovery_rules"));

        // the file keeps green only (the variable's [] would keep everything)
        await AssertFiltered("blue", "green", "start");

        // rewrite it to keep blue: reloaded within a few seconds, no restart
        File.WriteAllText(RulesFile, KeepBlue);
        await WaitForMetric("collector_config_reloads_total", 1);
        Assert.NotNull(await _collector.WaitForLogAsync(l => l.Contains("discovery rules reloaded") && l.Contains("1 rules in effect")));
        await AssertFiltered("green", "blue", "reloaded");

        // a file that is not JSON is refused: the blue rules stay
        File.WriteAllText(RulesFile, "[{\"key\": {\"eq\": \"x-tenant\"");
        await WaitForMetric("collector_config_reload_failures_total", 1);
        Assert.NotNull(await _collector.WaitForLogAsync(l => l.Contains("refused the new discovery rules") && l.Contains("keeping the 1 rules")));
        await AssertFiltered("green", "blue", "refused");
        Assert.Equal(1, await _collector.MetricAsync("collector_config_reloads_total"));
        Assert.False(_collector.HasExited);
    }
}
