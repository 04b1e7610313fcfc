using Collector.Tests.Support;

namespace Collector.Tests.Filtering;

/// <summary>The filters in the built collector with real probes: requests made by a copy of curl
/// under a name of this test's own (so the collector traces this test's client and nginx and
/// nothing else, and every count is exact), messages read from stdout, drops from /metrics.</summary>
[Collection("kernel")]
public sealed class FilterEndToEndTests : IDisposable
{
    private readonly Nginx _nginx = new();
    private readonly string _id = Guid.NewGuid().ToString("N");
    private readonly string _client;

    public FilterEndToEndTests()
    {
        // the process name is the file name, at most 15 bytes
        _client = Path.Combine(Repo.TempDir("client"), "fc" + _id[..10]);
        File.Copy("/usr/bin/curl", _client);
        File.SetUnixFileMode(_client, UnixFileMode.UserRead | UnixFileMode.UserExecute | UnixFileMode.UserWrite);
        File.WriteAllText(Path.Combine(_nginx.Www, "f.txt"), "filtered?\n");
    }

    public void Dispose() => _nginx.Dispose();

    private string NginxPids()
    {
        var master = File.ReadAllText(Path.Combine(_nginx.Dir, "nginx.pid")).Trim();
        var children = File.ReadAllText($"/proc/{master}/task/{master}/children").Split(' ', StringSplitOptions.RemoveEmptyEntries);
        return string.Join(",", children.Prepend(master));
    }

    private Task<CollectorProcess> Start(Dictionary<string, string> env)
    {
        env["TRACE_PIDS"] = NginxPids();
        env["TRACE_COMMS"] = Path.GetFileName(_client);
        return CollectorProcess.StartAsync(env);
    }

    private string Request(string name, string host, params string[] headers)
    {
        var path = $"/f.txt?id={_id}-{name}";
        var h = string.Join(" ", headers.Select(x => $"-H '{x}'"));
        Shell.Check("bash", $"-c \"{_client} -s --fail -o /dev/null -H 'Host: {host}' {h} 'http://127.0.0.1:{_nginx.PlainPort}{path}'\"");
        return path;
    }

    private static Task<double> Filtered(CollectorProcess c, string reason) =>
        c.MetricAsync($"collector_exchanges_filtered_total{{reason=\"{reason}\"}}");

    /// <summary>Waits for the marker request's server side: the exchanges of the requests made
    /// before it have all been filtered or emitted by then (one reader, events in order).</summary>
    private static async Task Marker(CollectorProcess c, string path)
    {
        var found = await c.WaitForAsync(m => m.GetProperty("path").GetString() == path && m.GetProperty("direction").GetString() == "1", 1);
        Assert.True(found.Count == 1, $"the marker {path} was not captured");
    }

    private static async Task WaitFor(Func<Task<bool>> condition, string what)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (!await condition())
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException("waited in vain for " + what);
            await Task.Delay(200);
        }
    }

    [Fact]
    public async Task Egress_ip_hosts_discovery_rules_and_header_values_filter_and_count_each_exchange()
    {
        await using var collector = await Start(new()
        {
            ["TRAFFIC_DISABLE_EGRESS"] = "true",
            ["AKTO_IGNORE_IP_TRAFFIC"] = "true",
            ["AKTO_MODULE_DISCOVERY_CONFIG"] = "[{\"key\":{\"eq\":\"X-Tenant\",\"ifAbsent\":\"Reject\"},\"value\":{\"regex\":\"^acme\"}}]",
            ["AKTO_HEADER_VALUE_FILTER"] = "{\"x-env\":\"prod\",\"x-team\":\"payments\"}",
        });
        var host = $"api-{_id[..8]}.acme.test";
        var kept1 = Request("kept-env", host, "x-tenant: acme-1", "x-env: prod");
        Request("ip-host", $"127.0.0.1:{_nginx.PlainPort}", "x-tenant: acme-1", "x-env: prod");
        Request("no-tenant", host, "x-env: prod");
        Request("tenant-case", host, "x-tenant: ACME", "x-env: prod");
        var kept2 = Request("kept-team", host, "x-tenant: acme", "X-Team: payments");
        Request("wrong-env", host, "x-tenant: acme", "x-env: staging");

        // six requests: six client sides (egress), and of the six server sides two kept
        await WaitFor(async () => await Filtered(collector, "egress_disabled") == 6, "six egress drops");
        await WaitFor(async () => (await Filtered(collector, "ip_host")) + (await Filtered(collector, "discovery_rules")) +
                                  (await Filtered(collector, "header_value_filter")) == 4, "four server-side drops");
        var kept = await collector.WaitForAsync(m => m.GetProperty("path").GetString()!.Contains(_id), 2);
        // a later request that is kept: once it is out, everything before it has been judged
        await Marker(collector, Request("marker", $"marker-{_id[..8]}.acme.test", "x-tenant: acme-2", "x-env: prod"));
        Assert.Equal(1, await Filtered(collector, "ip_host"));
        Assert.Equal(2, await Filtered(collector, "discovery_rules"));
        Assert.Equal(1, await Filtered(collector, "header_value_filter"));
        var emitted = collector.Messages().Where(m => m.GetProperty("path").GetString()!.Contains(_id)).ToList();
        Assert.Equal(new[] { kept1, kept2 }.Order(), emitted.Select(m => m.GetProperty("path").GetString()).Where(p => !p!.EndsWith("-marker")).Order());
        Assert.All(emitted, m => Assert.Equal("1", m.GetProperty("direction").GetString()));
        Assert.Equal(2, kept.Count);
        // the processor's per-host traffic counts, for what was kept
        Assert.Equal(2, await collector.MetricAsync($"collector_host_requests_total{{host=\"{host}\"}}"));
    }

    [Fact]
    public async Task Cloud_metadata_calls_are_filtered_and_counted()
    {
        await using var collector = await Start(new() { ["AKTO_IGNORE_CLOUD_METADATA_CALLS"] = "true" });
        Request("metadata", "169.254.169.254");
        Request("metadata-port", "169.254.169.254:80");
        var kept = Request("other", $"svc-{_id[..8]}.test");
        await WaitFor(async () => await Filtered(collector, "cloud_metadata") == 4, "four metadata drops (both sides of two requests)");
        var found = await collector.WaitForAsync(m => m.GetProperty("path").GetString()!.Contains(_id), 2);
        await Marker(collector, Request("marker", $"svc-{_id[..8]}.test"));
        Assert.Equal(4, await Filtered(collector, "cloud_metadata"));
        Assert.Equal([kept, kept], collector.Messages().Select(m => m.GetProperty("path").GetString()!).Where(p => p.Contains(_id) && !p.EndsWith("-marker")));
        Assert.Equal(2, found.Count);
    }
}
