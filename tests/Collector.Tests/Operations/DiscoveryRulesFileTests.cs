using Collector.Configuration;
using Collector.Filtering;
using Collector.Metrics;
using Collector.Tests.Support;
using Microsoft.Extensions.Logging;

namespace Collector.Tests.Operations;

/// <summary>The discovery rules file on a real file system, changed the ways users and the kubelet
/// change it: rewritten in place, and swapped through the ..data symlink of a ConfigMap mount.</summary>
public sealed class DiscoveryRulesFileTests : IDisposable
{
    private const string Green = """[{"key":{"eq":"x-tenant","ifAbsent":"reject"},"value":{"regex":"^green$"}}]""";
    private const string Blue = """[{"key":{"eq":"x-tenant","ifAbsent":"reject"},"value":{"regex":"^blue$"}},{"key":{"eq":"host"},"value":{"regex":"."}}]""";
    private readonly string _dir = Repo.TempDir("rules");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>A ConfigMap volume as the kubelet writes it: ..TIMESTAMP/rules.json, ..data → that
    /// directory, rules.json → ..data/rules.json; an update swaps ..data atomically.</summary>
    private sealed class ConfigMapVolume(string dir)
    {
        private int _version;
        public string File => Path.Combine(dir, "rules.json");

        public void Publish(string content)
        {
            var version = $"..2025_01_01_00_00_{_version++:D2}.000000001";
            Directory.CreateDirectory(Path.Combine(dir, version));
            System.IO.File.WriteAllText(Path.Combine(dir, version, "rules.json"), content);
            var old = new FileInfo(Path.Combine(dir, "..data")).LinkTarget;
            var tmp = Path.Combine(dir, "..data_tmp");
            System.IO.File.CreateSymbolicLink(tmp, version);
            Shell.Check("mv", $"-T {tmp} {Path.Combine(dir, "..data")}"); // rename(2) over the old link
            if (!System.IO.File.Exists(File) && new FileInfo(File).LinkTarget is null)
                System.IO.File.CreateSymbolicLink(File, "..data/rules.json");
            if (old is not null) Directory.Delete(Path.Combine(dir, old), recursive: true);
        }
    }

    private (ExchangeFilter Filter, DiscoveryRulesFile File, CollectorMetrics Metrics, ListLogger Log) Start(string path, string? inline = null)
    {
        var settings = new Settings { DiscoveryConfigPath = path, DiscoveryConfig = inline };
        var startup = DiscoveryRulesFile.Load(settings);
        var filter = new ExchangeFilter(settings, startup.Rules, new Dictionary<string, string>());
        var metrics = new CollectorMetrics();
        var log = new ListLogger();
        return (filter, new DiscoveryRulesFile(path, startup.FileText!, filter, metrics, log), metrics, log);
    }

    [Fact]
    public void A_rewritten_file_replaces_the_rules_and_a_bad_one_is_refused_keeping_the_old()
    {
        var path = Path.Combine(_dir, "rules.json");
        File.WriteAllText(path, Green);
        var (filter, file, metrics, log) = Start(path);
        Assert.Equal("^green$", Assert.Single(filter.Rules).Value.ToString());

        file.Check();
        Assert.Equal(0, metrics.ConfigReloads.Value); // unchanged content: nothing to do

        File.WriteAllText(path, Blue);
        file.Check();
        Assert.Equal(1, metrics.ConfigReloads.Value);
        Assert.Equal(["^blue$", "."], filter.Rules.Select(r => r.Value.ToString()));
        Assert.Contains(log.Entries, e => e.Level == LogLevel.Information && e.Message.Contains("reloaded") && e.Message.Contains("2 rules"));

        File.WriteAllText(path, "[{\"key\":");
        file.Check();
        file.Check(); // the same bad content is refused once
        Assert.Equal(1, metrics.ConfigReloadFailures.Value);
        Assert.Equal(["^blue$", "."], filter.Rules.Select(r => r.Value.ToString()));
        var refused = Assert.Single(log.Entries, e => e.Level == LogLevel.Warning);
        Assert.Contains("refused", refused.Message);
        Assert.Contains("keeping the 2 rules", refused.Message);

        File.WriteAllText(path, """[{"key":{"eq":"x"},"value":{"regex":"("}}]""");
        file.Check();
        Assert.Equal(2, metrics.ConfigReloadFailures.Value);
        Assert.Contains(log.Entries, e => e.Message.Contains("invalid regex"));

        File.WriteAllText(path, "[]");
        file.Check();
        Assert.Equal(2, metrics.ConfigReloads.Value);
        Assert.Empty(filter.Rules);
    }

    [Fact]
    public void A_configmap_update_through_the_data_symlink_is_seen()
    {
        var volume = new ConfigMapVolume(_dir);
        volume.Publish(Green);
        var (filter, file, metrics, _) = Start(volume.File);
        Assert.Equal("^green$", Assert.Single(filter.Rules).Value.ToString());

        volume.Publish(Blue);
        file.Check();
        Assert.Equal(1, metrics.ConfigReloads.Value);
        Assert.Equal(2, filter.Rules.Count);

        volume.Publish("not json");
        file.Check();
        Assert.Equal(1, metrics.ConfigReloadFailures.Value);
        Assert.Equal(2, filter.Rules.Count);
    }

    [Fact]
    public async Task The_poll_loop_picks_up_a_change_by_itself()
    {
        var path = Path.Combine(_dir, "rules.json");
        File.WriteAllText(path, Green);
        var settings = new Settings { DiscoveryConfigPath = path };
        var startup = DiscoveryRulesFile.Load(settings);
        var filter = new ExchangeFilter(settings, startup.Rules, new Dictionary<string, string>());
        var metrics = new CollectorMetrics();
        var file = new DiscoveryRulesFile(path, startup.FileText!, filter, metrics, new ListLogger(), TimeSpan.FromMilliseconds(50));
        using var stop = new CancellationTokenSource();
        var loop = file.RunAsync(stop.Token);
        File.WriteAllText(path, Blue);
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (metrics.ConfigReloads.Value == 0 && DateTime.UtcNow < deadline) await Task.Delay(20);
        stop.Cancel();
        await loop;
        Assert.Equal(1, metrics.ConfigReloads.Value);
        Assert.Equal(2, Volatile.Read(ref metrics.DiscoveryRuleCount));
    }

    [Fact]
    public void A_file_that_disappears_is_reported_once_and_the_rules_stay()
    {
        var path = Path.Combine(_dir, "rules.json");
        File.WriteAllText(path, Green);
        var (filter, file, metrics, log) = Start(path);
        File.Delete(path);
        file.Check();
        file.Check();
        Assert.Equal(1, metrics.ConfigReloadFailures.Value);
        Assert.Single(filter.Rules);
        Assert.Contains(log.Entries, e => e.Level == LogLevel.Warning && e.Message.Contains("cannot read"));
        File.WriteAllText(path, Green);
        file.Check();
        Assert.Contains(log.Entries, e => e.Message.Contains("readable again"));
        Assert.Equal(0, metrics.ConfigReloads.Value); // same rules as before
    }

    [Fact]
    public void At_start_the_file_wins_over_the_variable_and_problems_name_the_variable()
    {
        var path = Path.Combine(_dir, "rules.json");
        File.WriteAllText(path, Green);
        var both = DiscoveryRulesFile.Load(new Settings { DiscoveryConfigPath = path, DiscoveryConfig = Blue });
        Assert.Equal("^green$", Assert.Single(both.Rules).Value.ToString());
        Assert.Contains("AKTO_MODULE_DISCOVERY_CONFIG is set too and ignored: the file wins", both.Description);

        var inline = DiscoveryRulesFile.Load(new Settings { DiscoveryConfig = Blue });
        Assert.Equal(2, inline.Rules.Count);
        Assert.Null(inline.FileText);

        var missing = Assert.Throws<SettingsException>(() => DiscoveryRulesFile.Load(new Settings { DiscoveryConfigPath = path + ".missing" }));
        Assert.Equal("AKTO_MODULE_DISCOVERY_CONFIG_PATH", missing.Variable);
        File.WriteAllText(path, "{}");
        var bad = Assert.Throws<SettingsException>(() => DiscoveryRulesFile.Load(new Settings { DiscoveryConfigPath = path }));
        Assert.Equal("AKTO_MODULE_DISCOVERY_CONFIG_PATH", bad.Variable);
        Assert.Contains("JSON array", bad.Message);
        // the inline rules must parse even when the file wins
        File.WriteAllText(path, Green);
        var badInline = Assert.Throws<SettingsException>(() => DiscoveryRulesFile.Load(new Settings { DiscoveryConfigPath = path, DiscoveryConfig = "[" }));
        Assert.Equal("AKTO_MODULE_DISCOVERY_CONFIG", badInline.Variable);
    }
}
