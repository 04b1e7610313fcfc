using System.Text.Json;
using Collector.Tests.Support;

namespace Collector.Tests.Operations;

/// <summary>A setting that does not parse stops the built collector before it touches the kernel,
/// with one line naming the variable (a JSON line when LOG_FORMAT=json) and status 2.</summary>
public sealed class StartupErrorTests
{
    public static IEnumerable<object[]> BadSettings() =>
    [
        ["TRAFFIC_MAX_ACTIVE_CONN", "lots", "text"],
        ["TRAFFIC_MAX_ACTIVE_CONN", "lots", "json"],
        ["METRICS_BIND", "localhost", "json"],
        ["AKTO_MODULE_DISCOVERY_CONFIG", "[{\"key\":{\"eq\":\"host\"},\"value\":{\"regex\":\"(\"}}]", "json"],
        ["AKTO_MODULE_DISCOVERY_CONFIG_PATH", "/nonexistent/rules.json", "text"],
        ["AKTO_MODULE_DISCOVERY_CONFIG_PATH", "/nonexistent/rules.json", "json"],
        ["BPF_FEATURES_OFF", "ring_buffer,kprobes", "text"],
    ];

    [Theory]
    [MemberData(nameof(BadSettings))]
    public void A_bad_setting_stops_start_up_with_one_line_naming_it(string variable, string value, string format)
    {
        var password = "pw-" + Guid.NewGuid().ToString("N");
        var (code, stdout, stderr) = Shell.Run(Repo.CollectorBinary, "", TimeSpan.FromSeconds(30), env: new Dictionary<string, string>
        {
            [variable] = value,
            ["LOG_FORMAT"] = format,
            ["KAFKA_PASSWORD"] = password,
            ["METRICS_BIND"] = variable == "METRICS_BIND" ? value : $"127.0.0.1:{Repo.FreePort()}",
        });
        Assert.Equal(2, code);
        Assert.Equal("", stdout);
        var line = Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.DoesNotContain(password, stderr);
        string message;
        if (format == "json")
        {
            var e = JsonDocument.Parse(line).RootElement;
            Assert.Equal("Critical", e.GetProperty("LogLevel").GetString());
            message = e.GetProperty("Message").GetString()!;
        }
        else
        {
            message = line;
        }
        Assert.StartsWith($"configuration error: {variable}: ", message);
    }

    [Fact]
    public void A_metrics_address_in_use_stops_start_up_with_one_line_naming_it()
    {
        using var taken = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        taken.Start();
        var port = ((System.Net.IPEndPoint)taken.LocalEndpoint).Port;
        var (code, stdout, stderr) = Shell.Run(Repo.CollectorBinary, "", TimeSpan.FromSeconds(60), env: new Dictionary<string, string>
        {
            ["METRICS_BIND"] = $"127.0.0.1:{port}",
            ["TRACE_COMMS"] = "curl",
        });
        Assert.Equal(2, code);
        Assert.Equal("", stdout);
        var lines = stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.StartsWith($"configuration error: METRICS_BIND: cannot listen on 127.0.0.1:{port}: ", lines[^1]);
        Assert.Contains("in use", lines[^1]);
        Assert.DoesNotContain(lines, l => l.TrimStart().StartsWith("at "));
    }
}
