using System.Text.Json;
using Collector.Tests.Support;

namespace Collector.Tests.Kernel;

/// <summary>REDACT_HEADERS end to end: curl sends credentials to nginx (HTTP and TLS), nginx sets
/// a cookie; the messages of both sides carry &lt;redacted&gt; and the secrets appear nowhere.</summary>
[Collection("kernel")]
public sealed class RedactionTests : IAsyncLifetime
{
    private readonly string _serverSecret = "srv-" + Guid.NewGuid().ToString("N");
    private Nginx _nginx = null!;

    public Task InitializeAsync()
    {
        _nginx = new Nginx(extraLocations: $$"""location = /login { add_header Set-Cookie "sid={{_serverSecret}}; HttpOnly"; add_header X-Trace visible-trace; return 200 'welcome\n'; }""");
        return Task.CompletedTask;
    }

    public Task DisposeAsync()
    {
        _nginx.Dispose();
        return Task.CompletedTask;
    }

    private static Dictionary<string, string> Headers(JsonElement m, string field) =>
        WalkingSkeletonTests.ParseHeaders(m.GetProperty(field).GetString()!);

    private (string Path, string[] Secrets) Login(string scheme)
    {
        var port = scheme == "http" ? _nginx.PlainPort : _nginx.TlsPort;
        var token = "tok-" + Guid.NewGuid().ToString("N");
        var cookie = "ck-" + Guid.NewGuid().ToString("N");
        var key = "key-" + Guid.NewGuid().ToString("N");
        var path = $"/login?redact={scheme}-{Guid.NewGuid():N}";
        var body = Shell.Check("curl",
            $"-sk --fail -H \"Authorization: Bearer {token}\" -H \"Cookie: session={cookie}\" -H \"X-Api-Key: {key}\" " +
            $"-H \"X-Request-Id: visible-request\" {scheme}://127.0.0.1:{port}{path}");
        Assert.Equal("welcome\n", body);
        return (path, [token, cookie, key, _serverSecret]);
    }

    [Theory]
    [InlineData("http")]
    [InlineData("https")]
    public async Task Listed_headers_are_redacted_in_the_messages_of_both_sides(string scheme)
    {
        await using var collector = await CollectorProcess.StartAsync(new Dictionary<string, string>
        {
            ["TRACE_COMMS"] = "curl,nginx",
            // any case, spaces allowed
            ["REDACT_HEADERS"] = "Authorization, cookie,SET-COOKIE,x-api-key",
        });
        var (path, secrets) = Login(scheme);
        var found = await collector.WaitForAsync(m => m.GetProperty("path").GetString() == path, 2);
        Assert.Equal(2, found.Count);
        Assert.Equal(["1", "2"], found.Select(m => m.GetProperty("direction").GetString()).Order());
        foreach (var m in found)
        {
            var request = Headers(m, "requestHeaders");
            Assert.Equal("<redacted>", request["authorization"]);
            Assert.Equal("<redacted>", request["cookie"]);
            Assert.Equal("<redacted>", request["x-api-key"]);
            Assert.Equal("visible-request", request["x-request-id"]);
            var response = Headers(m, "responseHeaders");
            Assert.Equal("<redacted>", response["set-cookie"]);
            Assert.Equal("visible-trace", response["x-trace"]);
            Assert.Equal("welcome\n", m.GetProperty("responsePayload").GetString());
        }
        foreach (var secret in secrets)
            Assert.DoesNotContain(collector.Lines, l => l.Contains(secret));
    }

    [Fact]
    public async Task Without_REDACT_HEADERS_the_values_go_out_as_sent()
    {
        await using var collector = await CollectorProcess.StartAsync(new Dictionary<string, string> { ["TRACE_COMMS"] = "curl,nginx" });
        var (path, secrets) = Login("http");
        var found = await collector.WaitForAsync(m => m.GetProperty("path").GetString() == path, 2);
        Assert.Equal(2, found.Count);
        foreach (var m in found)
        {
            Assert.Equal($"Bearer {secrets[0]}", Headers(m, "requestHeaders")["authorization"]);
            Assert.Equal($"session={secrets[1]}", Headers(m, "requestHeaders")["cookie"]);
            Assert.StartsWith($"sid={secrets[3]}", Headers(m, "responseHeaders")["set-cookie"]);
        }
    }
}
