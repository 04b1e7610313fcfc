using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Collector.Tests.Support;

namespace Collector.Tests.Kernel;

/// <summary>SENSITIVE_DATA_POLICY end to end in the real kernel: nginx answers JSON holding a card
/// number, an SSN under "ssn", an email and a JWT; curl asks, both traced. With report the counts
/// appear on /metrics under the endpoint template; with mask the message holds the keyed hash in
/// exactly those spans and nothing else changed; with drop no message is sent and the drop is
/// counted.</summary>
[Collection("kernel")]
public sealed class SensitiveDataTests : IAsyncLifetime
{
    private const string Jwt =
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
    private const string Key = "e2e-mask-key-0123456789abcdef";
    private static readonly string Body =
        $"{{\"id\":1764000000,\"name\":\"Alice\",\"card\":\"4111 1111 1111 1111\",\"ssn\":\"536904399\",\"email\":\"alice@example.com\",\"token\":\"{Jwt}\",\"version\":\"1.2.3.4\"}}";

    private Nginx _nginx = null!;
    private readonly string _dir = Directory.CreateTempSubdirectory("sensitive-e2e-").FullName;

    public Task InitializeAsync()
    {
        // nginx's return takes the body as a quoted string: its quotes escaped for nginx
        _nginx = new Nginx(extraLocations: $$"""location /customers/ { default_type application/json; return 200 '{{Body}}'; }""");
        return Task.CompletedTask;
    }

    public Task DisposeAsync()
    {
        _nginx.Dispose();
        Directory.Delete(_dir, recursive: true);
        return Task.CompletedTask;
    }

    private string Get(string path)
    {
        var body = Shell.Check("curl", $"-s --fail http://127.0.0.1:{_nginx.PlainPort}{path}");
        Assert.Equal(Body, body);
        return path;
    }

    private async Task<CollectorProcess> Start(string policy) => await CollectorProcess.StartAsync(new Dictionary<string, string>
    {
        ["TRACE_COMMS"] = "curl,nginx",
        ["SENSITIVE_DATA_POLICY"] = policy,
        ["SENSITIVE_DATA_MASK_KEY"] = Key,
    });

    private static Dictionary<string, string> Headers(JsonElement m, string field) =>
        WalkingSkeletonTests.ParseHeaders(m.GetProperty(field).GetString()!);

    [Fact]
    public async Task Report_counts_findings_on_metrics_by_endpoint_template_and_names_them_in_the_message()
    {
        await using var collector = await Start("default");
        var path = Get($"/customers/{Random.Shared.Next(1000, 9999)}");
        var found = await collector.WaitForAsync(m => m.GetProperty("path").GetString() == path, 2);
        Assert.Equal(2, found.Count);
        foreach (var m in found)
        {
            Assert.Equal(Body, m.GetProperty("responsePayload").GetString());
            Assert.Equal("CREDIT_CARD@response.body.card, SSN@response.body.ssn, EMAIL@response.body.email, JWT@response.body.token",
                Headers(m, "responseHeaders")["x-collector-sensitive"]);
        }
        foreach (var category in new[] { "CREDIT_CARD", "SSN", "EMAIL", "JWT" })
            Assert.Equal(2, await collector.MetricAsync(
                $"collector_sensitive_findings_total{{category=\"{category}\",location=\"response.body\",endpoint=\"127.0.0.1/customers/INTEGER\"}}"));
        Assert.True(await collector.MetricAsync("collector_sensitive_exchanges_total{result=\"reported\"}") >= 2, collector.Status);
    }

    [Fact]
    public async Task Mask_puts_the_keyed_hash_in_exactly_the_matched_spans()
    {
        var policy = Path.Combine(_dir, "policy.yaml");
        File.WriteAllText(policy, "categories:\n  CREDIT_CARD: {action: mask}\n  SSN: {action: mask}\n  EMAIL: {action: mask}\n  JWT: {action: mask}\n");
        await using var collector = await Start(policy);
        var path = Get($"/customers/{Random.Shared.Next(1000, 9999)}");
        var found = await collector.WaitForAsync(m => m.GetProperty("path").GetString() == path, 2);
        var expected = Body.Replace("4111 1111 1111 1111", Hash("CREDIT_CARD", "4111 1111 1111 1111"))
            .Replace("536904399", Hash("SSN", "536904399"))
            .Replace("alice@example.com", Hash("EMAIL", "alice@example.com"))
            .Replace(Jwt, Hash("JWT", Jwt));
        foreach (var m in found)
            Assert.Equal(expected, m.GetProperty("responsePayload").GetString());
        foreach (var secret in new[] { "4111 1111 1111 1111", "536904399", "alice@example.com", Jwt })
            Assert.DoesNotContain(collector.Lines, l => l.Contains(secret));
        // at least: other curl and nginx processes on the machine are traced too
        Assert.True(await collector.MetricAsync("collector_sensitive_exchanges_total{result=\"masked\"}") >= 2, collector.Status);
    }

    private static string Hash(string category, string value)
    {
        var mac = HMACSHA256.HashData(Encoding.UTF8.GetBytes(Key), Encoding.UTF8.GetBytes(value));
        return $"[{category}:{Convert.ToHexStringLower(mac, 0, 8)}]";
    }

    [Fact]
    public async Task Drop_sends_nothing_and_counts_the_drop()
    {
        var policy = Path.Combine(_dir, "drop.yaml");
        File.WriteAllText(policy, "categories:\n  SSN: {action: drop, endpoints: ['*/customers/**']}\n");
        await using var collector = await Start(policy);
        var dropped = Get($"/customers/{Random.Shared.Next(1000, 9999)}");
        // a request the policy does not drop, after it: once its messages are out, the first had its turn
        var after = $"/after-{Guid.NewGuid():N}";
        Shell.Check("curl", $"-s http://127.0.0.1:{_nginx.PlainPort}{after}");
        await collector.WaitForAsync(m => m.GetProperty("path").GetString() == after, 2);
        Assert.DoesNotContain(collector.Messages(), m => m.GetProperty("path").GetString() == dropped);
        Assert.DoesNotContain(collector.Lines, l => l.Contains("536904399"));
        Assert.True(await collector.MetricAsync("collector_exchanges_filtered_total{reason=\"sensitive_data\"}") >= 2, collector.Status);
        Assert.True(await collector.MetricAsync("collector_sensitive_exchanges_total{result=\"dropped\"}") >= 2, collector.Status);
        Assert.Equal(2, await collector.MetricAsync(
            "collector_sensitive_findings_total{category=\"SSN\",location=\"response.body\",endpoint=\"127.0.0.1/customers/INTEGER\"}"));
    }

    [Fact]
    public async Task A_changed_policy_file_applies_without_a_restart_and_a_bad_one_is_refused()
    {
        var policy = Path.Combine(_dir, "reload.yaml");
        File.WriteAllText(policy, "categories:\n  EMAIL: {action: report}\n");
        await using var collector = await Start(policy);
        var first = Get($"/customers/{Random.Shared.Next(1000, 9999)}");
        foreach (var m in await collector.WaitForAsync(m => m.GetProperty("path").GetString() == first, 2))
            Assert.Contains("alice@example.com", m.GetProperty("responsePayload").GetString());

        File.WriteAllText(policy, "categories:\n  EMAIL: {action: mask}\n");
        Assert.NotNull(await collector.WaitForLogAsync(l => l.Contains("sensitive-data policy reloaded"), TimeSpan.FromSeconds(15)));
        var second = Get($"/customers/{Random.Shared.Next(1000, 9999)}");
        foreach (var m in await collector.WaitForAsync(m => m.GetProperty("path").GetString() == second, 2))
            Assert.Contains($"\"email\":\"{Hash("EMAIL", "alice@example.com")}\"", m.GetProperty("responsePayload").GetString());

        File.WriteAllText(policy, "categories:\n  EMAIL: {action: vanish}\n");
        Assert.NotNull(await collector.WaitForLogAsync(l => l.Contains("refused the new sensitive-data policy"), TimeSpan.FromSeconds(15)));
        var third = Get($"/customers/{Random.Shared.Next(1000, 9999)}");
        foreach (var m in await collector.WaitForAsync(m => m.GetProperty("path").GetString() == third, 2))
            Assert.DoesNotContain("alice@example.com", m.GetProperty("responsePayload").GetString());
        Assert.Equal(1, await collector.MetricAsync("collector_sensitive_policy_reloads_total"));
        Assert.Equal(1, await collector.MetricAsync("collector_sensitive_policy_reload_failures_total"));
    }
}
