using System.Diagnostics;
using Collector.Tests.Support;

namespace Collector.Tests.Filtering;

/// <summary>AKTO_MONGO_CONN in the built collector, with real probes on a real nginx and curl, and
/// the scripted MongoDB server (<see cref="ScriptedMongoServer"/>, the real driver on the wire):
/// the header-value filter read from accounts_settings decides which captured requests are sent.
/// Only this test's nginx is traced (its pids), so every count is exact.</summary>
[Collection("kernel")]
public sealed class MongoFilterEndToEndTests : IDisposable
{
    private readonly Nginx _nginx = new();
    private readonly string _id = Guid.NewGuid().ToString("N");

    public MongoFilterEndToEndTests() => File.WriteAllText(Path.Combine(_nginx.Www, "m.txt"), "mongo?\n");

    public void Dispose() => _nginx.Dispose();

    private string NginxPids()
    {
        var master = File.ReadAllText(Path.Combine(_nginx.Dir, "nginx.pid")).Trim();
        var children = File.ReadAllText($"/proc/{master}/task/{master}/children").Split(' ', StringSplitOptions.RemoveEmptyEntries);
        return string.Join(",", children.Prepend(master));
    }

    private Task<CollectorProcess> Start(string mongo, Dictionary<string, string>? extra = null)
    {
        var env = new Dictionary<string, string>
        {
            ["TRACE_PIDS"] = NginxPids(),
            ["AKTO_MONGO_CONN"] = mongo,
            ["AKTO_MONGO_REFRESH_SECS"] = "0.5",
            ["AKTO_MONGO_TIMEOUT_SECS"] = "1",
        };
        foreach (var (k, v) in extra ?? []) env[k] = v;
        return CollectorProcess.StartAsync(env);
    }

    private string Request(string name, string env)
    {
        var path = $"/m.txt?id={_id}-{name}";
        Shell.Check("curl", $"-s --fail -o /dev/null -H \"x-env: {env}\" http://127.0.0.1:{_nginx.PlainPort}{path}");
        return path;
    }

    private List<string> Sent(CollectorProcess c) =>
        c.Messages().Select(m => m.GetProperty("path").GetString()!).Where(p => p.Contains(_id)).ToList();

    private static async Task WaitFor(CollectorProcess c, Func<Task<bool>> condition, string what, double seconds = 30)
    {
        var deadline = DateTime.UtcNow.AddSeconds(seconds);
        while (!await condition())
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"waited in vain for {what}\n{c.Log}");
            await Task.Delay(100);
        }
    }

    private static Task<double> Metric(CollectorProcess c, string sample) => c.MetricAsync(sample);

    /// <summary>A log line that must come (the console logger writes behind the counters).</summary>
    private static async Task<string> LogLine(CollectorProcess c, string text) =>
        await c.WaitForLogAsync(l => l.Contains(text)) ?? throw new TimeoutException($"no log line with '{text}'\n{c.Log}");
    private static Task<double> Filtered(CollectorProcess c) => c.MetricAsync("collector_exchanges_filtered_total{reason=\"header_value_filter\"}");
    private static Task<double> Failed(CollectorProcess c, string reason) => c.MetricAsync($"collector_mongo_settings_failures_total{{reason=\"{reason}\"}}");

    /// <summary>Sends the requests in order, the last one kept: once it is on stdout every earlier
    /// exchange has been through the filter (one nginx worker, requests one after the other).</summary>
    private async Task<List<string>> SendThenWaitForLast(CollectorProcess c, params (string Name, string Env)[] requests)
    {
        var paths = requests.Select(r => Request(r.Name, r.Env)).ToList();
        await c.WaitForAsync(m => m.GetProperty("path").GetString() == paths[^1], 1);
        Assert.True(Sent(c).Contains(paths[^1]), $"{paths[^1]} was not sent\n{c.Log}");
        return paths;
    }

    [Fact]
    public async Task Mongo_down_at_start_then_up_then_gone_the_environment_value_then_mongos_then_the_last_good_one_filter_captured_traffic()
    {
        var port = Repo.FreePort();
        await using var collector = await Start($"mongodb://127.0.0.1:{port}/admini",
            new() { ["AKTO_HEADER_VALUE_FILTER"] = "{\"x-env\":\"staging\"}" });
        await LogLine(collector, $"header-value filter: MongoDB (127.0.0.1:{port}, database 1000000, accounts_settings.filterHeaderValueMap, read every 0.5s); until its first answer AKTO_HEADER_VALUE_FILTER (1 entries)");

        // MongoDB down: the collector is up, counts the failed reads, and filters by the environment's value
        await WaitFor(collector, async () => await Failed(collector, "unreachable") >= 3, "three failed reads");
        Assert.Equal(0, await Metric(collector, "collector_mongo_settings_ok"));
        Assert.Equal(1, await Metric(collector, "collector_header_value_filter_entries"));
        await LogLine(collector, "cannot read 1000000.accounts_settings");
        Assert.Single(collector.LogLines, l => l.Contains("cannot read 1000000.accounts_settings"));
        var down = await SendThenWaitForLast(collector, ("down-prod", "prod"), ("down-staging", "staging"));
        Assert.Equal([down[1]], Sent(collector));
        Assert.Equal(1, await Filtered(collector));

        // MongoDB comes up with another value: it wins from the next read on
        var server = new ScriptedMongoServer(port);
        List<string> up;
        try
        {
            server.SetFilter(new Dictionary<string, string> { ["x-env"] = "prod" });
            await WaitFor(collector, async () => await Metric(collector, "collector_mongo_settings_reads_total") >= 1, "a read from MongoDB");
            Assert.Equal(1, await Metric(collector, "collector_mongo_settings_ok"));
            up = await SendThenWaitForLast(collector, ("up-staging", "staging"), ("up-prod", "prod"));
            Assert.Equal([down[1], up[1]], Sent(collector));
            Assert.Equal(2, await Filtered(collector));
            await LogLine(collector, "readable again; header-value filter: 1 entries (x-env)");
            Assert.Contains(server.Commands, c => c.Command == "find" && c.Database == "1000000" && (string?)c.Body["find"] == "accounts_settings");
        }
        finally
        {
            await server.DisposeAsync();
        }

        // MongoDB gone: the last value read stays
        var failedBefore = await Metric(collector, "collector_mongo_settings_failures_total{reason=\"unreachable\"}") +
                           await Metric(collector, "collector_mongo_settings_failures_total{reason=\"connection_lost\"}");
        await WaitFor(collector, async () => await Failed(collector, "unreachable") + await Failed(collector, "connection_lost") >= failedBefore + 2,
            "two more failed reads");
        var gone = await SendThenWaitForLast(collector, ("gone-staging", "staging"), ("gone-prod", "prod"));
        Assert.Equal([down[1], up[1], gone[1]], Sent(collector));
        Assert.Equal(3, await Filtered(collector));
        Assert.Equal(1, await Metric(collector, "collector_header_value_filter_entries"));
        await LogLine(collector, "keeping the last value read (1 entries)");
        Assert.Equal(0, await collector.StopAsync());
    }

    [Fact]
    public async Task A_refused_login_is_counted_and_the_password_appears_nowhere_in_the_log()
    {
        await using var server = new ScriptedMongoServer();
        server.SetFilter(new Dictionary<string, string> { ["x-env"] = "prod" });
        var password = "pw-" + Guid.NewGuid().ToString("N")[..12] + "@:/";
        var connectionString = $"mongodb://collector:{Uri.EscapeDataString(password)}@127.0.0.1:{server.Port}/admini";
        await using var collector = await Start(connectionString);
        await WaitFor(collector, async () => await Failed(collector, "auth") >= 3, "three refused logins");
        Assert.Contains(server.Commands, c => c.Command == "saslStart");
        Assert.Equal(0, await Metric(collector, "collector_mongo_settings_reads_total"));
        Assert.Equal(0, await collector.StopAsync());
        var log = collector.Log;
        Assert.Contains("AKTO_MONGO_CONN=***", log);
        Assert.Single(collector.LogLines, l => l.Contains("(auth: "));
        foreach (var secret in new[] { password, Uri.EscapeDataString(password), connectionString, "collector:pw-" })
            Assert.DoesNotContain(secret, log);
    }

    [Fact]
    public async Task Sigterm_while_a_read_hangs_on_a_slow_server_stops_at_once()
    {
        await using var server = new ScriptedMongoServer { Fault = MongoFault.SlowFind, FindDelay = TimeSpan.FromMinutes(5) };
        server.SetFilter(new Dictionary<string, string> { ["x-env"] = "prod" });
        await using var collector = await Start(server.ConnectionString, new() { ["AKTO_MONGO_TIMEOUT_SECS"] = "120" });
        await server.WaitForFindsAsync(1, TimeSpan.FromSeconds(30));
        // capture goes on while the read hangs (the default is no filter until MongoDB answers)
        await SendThenWaitForLast(collector, ("while-hanging", "prod"));
        var clock = Stopwatch.StartNew();
        Assert.Equal(0, await collector.SignalAndWaitAsync("TERM", TimeSpan.FromSeconds(60)));
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(30), $"stopped in {clock.Elapsed}\n{collector.Log}");
        Assert.DoesNotContain(collector.LogLines, l => l.Contains("reading settings from MongoDB failed"));
        Assert.Equal(0, server.Errors.Count);
    }
}
