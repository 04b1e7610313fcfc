using System.Text.Json;
using Collector.Tests.Support;

namespace Collector.Tests.Kernel;

/// <summary>End to end in the real kernel: nginx (plaintext and TLS) and curl, the built collector
/// as a separate process, its stdout read as users read it.</summary>
[Collection("kernel")]
public sealed class WalkingSkeletonTests : IAsyncLifetime
{
    private Nginx _nginx = null!;
    private CollectorProcess _collector = null!;

    public async Task InitializeAsync()
    {
        _nginx = new Nginx();
        File.WriteAllText(Path.Combine(_nginx.Www, "known.txt"), "a known file\nwith two lines\n");
        _collector = await CollectorProcess.StartAsync(new Dictionary<string, string> { ["TRACE_COMMS"] = "curl,nginx" });
    }

    public async Task DisposeAsync()
    {
        await _collector.DisposeAsync();
        _nginx.Dispose();
    }

    public static IEnumerable<object[]> Schemes() => [["http"], ["https"]];

    [Theory]
    [MemberData(nameof(Schemes))]
    public async Task Get_of_a_known_file_is_emitted_by_both_sides(string scheme)
    {
        var port = scheme == "http" ? _nginx.PlainPort : _nginx.TlsPort;
        var path = $"/known.txt?id={Guid.NewGuid():N}";
        var body = Shell.Check("curl", $"-sk --fail {scheme}://127.0.0.1:{port}{path}");
        Assert.Equal("a known file\nwith two lines\n", body);

        var found = await _collector.WaitForAsync(m => m.GetProperty("path").GetString() == path, 2);
        Assert.Equal(2, found.Count);
        var server = Assert.Single(found, m => m.GetProperty("direction").GetString() == "1");
        var client = Assert.Single(found, m => m.GetProperty("direction").GetString() == "2");
        foreach (var m in found)
        {
            AssertAllStrings(m);
            Assert.Equal("GET", m.GetProperty("method").GetString());
            Assert.Equal("200", m.GetProperty("statusCode").GetString());
            Assert.Equal("200 OK", m.GetProperty("status").GetString());
            Assert.Equal("HTTP/1.1", m.GetProperty("type").GetString());
            Assert.Equal("a known file\nwith two lines\n", m.GetProperty("responsePayload").GetString());
            Assert.Equal("", m.GetProperty("requestPayload").GetString());
            var headers = ParseHeaders(m.GetProperty("requestHeaders").GetString()!);
            Assert.Equal($"127.0.0.1:{port}", headers["host"]);
            Assert.Equal($"127.0.0.1:{port}", m.GetProperty("destIp").GetString());
            Assert.Matches(@"^127\.0\.0\.1:\d+$", m.GetProperty("ip").GetString()!);
            Assert.NotEqual($"127.0.0.1:{port}", m.GetProperty("ip").GetString());
        }
        // both sides describe the same connection: the client's address is the same
        Assert.Equal(server.GetProperty("ip").GetString(), client.GetProperty("ip").GetString());
        Assert.Equal("nginx", server.GetProperty("process_name").GetString());
        Assert.Equal("curl", client.GetProperty("process_name").GetString());
        AssertNoCiphertext();
    }

    [Theory]
    [MemberData(nameof(Schemes))]
    public async Task Post_of_a_json_body_carries_the_exact_body(string scheme)
    {
        var port = scheme == "http" ? _nginx.PlainPort : _nginx.TlsPort;
        var path = $"/echo?id={Guid.NewGuid():N}";
        var json = "{\"user\":\"ada\",\"roles\":[\"admin\",\"dev\"],\"n\":42}";
        var body = Shell.Check("curl", $"-sk --fail -X POST -H content-type:application/json --data-binary @- {scheme}://127.0.0.1:{port}{path}", stdin: json);
        Assert.Equal("posted\n", body);

        var found = await _collector.WaitForAsync(m => m.GetProperty("path").GetString() == path, 2);
        Assert.Equal(2, found.Count);
        Assert.Contains(found, m => m.GetProperty("direction").GetString() == "1" && m.GetProperty("process_name").GetString() == "nginx");
        Assert.Contains(found, m => m.GetProperty("direction").GetString() == "2" && m.GetProperty("process_name").GetString() == "curl");
        foreach (var m in found)
        {
            Assert.Equal("POST", m.GetProperty("method").GetString());
            Assert.Equal(json, m.GetProperty("requestPayload").GetString());
            Assert.Equal("posted\n", m.GetProperty("responsePayload").GetString());
            var headers = ParseHeaders(m.GetProperty("requestHeaders").GetString()!);
            Assert.Equal("application/json", headers["content-type"]);
            Assert.Equal($"127.0.0.1:{port}", headers["host"]);
        }
        AssertNoCiphertext();
    }

    [Fact]
    public async Task Status_endpoint_reports_health_and_counts()
    {
        using var http = new HttpClient();
        Assert.Equal("ok\n", await http.GetStringAsync($"http://127.0.0.1:{_collector.MetricsPort}/healthz"));
        Shell.Check("curl", $"-s --fail http://127.0.0.1:{_nginx.PlainPort}/known.txt");
        await _collector.WaitForAsync(m => m.GetProperty("path").GetString() == "/known.txt", 2);
        var metrics = await _collector.MetricsAsync();
        foreach (var name in new[] { "collector_events_read_total", "collector_bytes_read_total", "collector_exchanges_emitted_total",
                     "collector_kernel_drops_total", "collector_connections_tracked" })
            Assert.Contains($"# TYPE {name} ", metrics);
        Assert.True(await _collector.MetricAsync("collector_events_read_total{source=\"syscall\"}") > 0);
        Assert.True(await _collector.MetricAsync("collector_bytes_read_total{source=\"syscall\"}") > 0);
        Assert.True(await _collector.MetricAsync("collector_exchanges_emitted_total{direction=\"inbound\"}") >= 1);
        Assert.True(await _collector.MetricAsync("collector_exchanges_emitted_total{direction=\"outbound\"}") >= 1);
    }

    [Fact]
    public async Task Sigterm_exits_zero_and_detaches()
    {
        var code = await _collector.StopAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(0, code);
        Assert.Contains("stopping", _collector.Log);
    }

    internal static Dictionary<string, string> ParseHeaders(string json)
    {
        // as the processor does: a flat object of strings, names lower-cased
        var d = new Dictionary<string, string>();
        foreach (var p in JsonDocument.Parse(json).RootElement.EnumerateObject())
            d[p.Name.ToLowerInvariant()] = p.Value.GetString()!;
        return d;
    }

    internal static void AssertAllStrings(JsonElement m)
    {
        foreach (var p in m.EnumerateObject())
            Assert.True(p.Value.ValueKind == JsonValueKind.String, $"{p.Name} is {p.Value.ValueKind}");
        foreach (var f in new[] { "method", "path", "type", "statusCode", "status", "requestHeaders", "responseHeaders",
                     "requestPayload", "responsePayload", "ip", "destIp", "time", "akto_account_id", "akto_vxlan_id",
                     "is_pending", "source", "direction", "process_id", "socket_id", "daemonset_id", "process_name", "enable_graph" })
            Assert.True(m.TryGetProperty(f, out _), $"field {f} missing");
        Assert.True(long.TryParse(m.GetProperty("time").GetString(), out var t) && Math.Abs(DateTimeOffset.UtcNow.ToUnixTimeSeconds() - t) < 120);
    }

    private void AssertNoCiphertext()
    {
        // TLS records start 0x16 0x03 (handshake) or 0x17 0x03 (application data)
        foreach (var line in _collector.Lines)
        {
            Assert.DoesNotContain("\\u0016\\u0003", line);
            Assert.DoesNotContain("\\u0017\\u0003", line);
            Assert.DoesNotContain("\u0016\u0003", line);
            Assert.DoesNotContain("\u0017\u0003", line);
        }
    }
}
