using System.Text.Json;
using System.Text.RegularExpressions;
using Collector.Tests.Support;

namespace Collector.Tests.Kernel;

/// <summary>What the built collector writes on stderr through a whole life: banner, kernel
/// features, a reload, a refused file, traffic, the stop.</summary>
[Collection("kernel")]
public sealed class LoggingTests
{
    [Theory]
    [InlineData("json")]
    [InlineData("text")]
    public async Task Logs_mask_secrets_report_kernel_features_and_in_json_every_line_parses(string format)
    {
        using var nginx = new Nginx();
        File.WriteAllText(Path.Combine(nginx.Www, "log.txt"), "log\n");
        var dir = Repo.TempDir("logging");
        var rules = Path.Combine(dir, "rules.json");
        File.WriteAllText(rules, "[]");
        var user = "user-" + Guid.NewGuid().ToString("N");
        var password = "pw-" + Guid.NewGuid().ToString("N");
        await using var collector = await CollectorProcess.StartAsync(new Dictionary<string, string>
        {
            ["TRACE_COMMS"] = "curl,nginx",
            ["LOG_FORMAT"] = format,
            ["KAFKA_USERNAME"] = user,
            ["KAFKA_PASSWORD"] = password,
            ["AKTO_MODULE_DISCOVERY_CONFIG_PATH"] = rules,
            ["REDACT_HEADERS"] = "authorization",
        });
        var path = $"/log.txt?format={format}-{Guid.NewGuid():N}";
        Shell.Check("curl", $"-s --fail http://127.0.0.1:{nginx.PlainPort}{path}");
        await collector.WaitForAsync(m => m.GetProperty("path").GetString() == path, 2);
        // a warning worth a line: a bad rules file
        File.WriteAllText(rules, "{");
        Assert.NotNull(await collector.WaitForLogAsync(l => l.Contains("refused the new discovery rules")));
        var tracepoints = await collector.MetricAsync("collector_tracepoints_attached");
        var metrics = await collector.MetricsAsync();
        var uprobes = Regex.Matches(metrics, @"^collector_probes_attached\{library=""[^""]+""\} (\d+)$", RegexOptions.Multiline)
            .Sum(m => int.Parse(m.Groups[1].Value));
        Assert.Equal(0, await collector.StopAsync(TimeSpan.FromSeconds(30)));
        Directory.Delete(dir, recursive: true);

        var lines = collector.LogLines.ToList();
        var messages = new List<string>();
        if (format == "json")
        {
            foreach (var line in lines)
            {
                JsonElement e;
                try { e = JsonDocument.Parse(line).RootElement; }
                catch (JsonException x) { throw new Xunit.Sdk.XunitException($"stderr line is not JSON ({x.Message}): {line}"); }
                Assert.Equal(JsonValueKind.Object, e.ValueKind);
                foreach (var field in new[] { "Timestamp", "LogLevel", "Category", "Message" })
                    Assert.True(e.TryGetProperty(field, out _), $"no {field} in {line}");
                messages.Add(e.GetProperty("Message").GetString()!);
            }
            var banner = JsonDocument.Parse(lines.Single(l => l.Contains("collector starting"))).RootElement;
            Assert.Equal("Information", banner.GetProperty("LogLevel").GetString());
            // the settings are a field of their own for log pipelines
            Assert.Contains("KAFKA_PASSWORD=***", banner.GetProperty("State").GetProperty("Settings").GetString());
            var refused = JsonDocument.Parse(lines.Single(l => l.Contains("refused the new discovery rules"))).RootElement;
            Assert.Equal("Warning", refused.GetProperty("LogLevel").GetString());
        }
        else
        {
            messages = lines;
        }

        // secrets never leave the process, on either stream
        foreach (var secret in new[] { user, password })
        {
            Assert.DoesNotContain(lines, l => l.Contains(secret));
            Assert.DoesNotContain(collector.Lines, l => l.Contains(secret));
        }
        var starting = Assert.Single(messages, m => m.Contains("collector starting"));
        Assert.Contains("KAFKA_USERNAME=***", starting);
        Assert.Contains("KAFKA_PASSWORD=***", starting);
        // every variable the collector reads is in the banner, as in effect
        foreach (var (name, _, _) in Collector.Configuration.SettingsReader.Variables)
            Assert.Contains($" {name}=", " " + starting[starting.IndexOf("settings: ", StringComparison.Ordinal)..].Replace("settings: ", ""));
        Assert.Contains($"LOG_FORMAT={format}", starting);
        Assert.Contains("REDACT_HEADERS=authorization", starting);
        Assert.Contains("HTTP_MAX_BODY_BYTES=262144", starting); // a default

        var ready = Assert.Single(messages, m => m.StartsWith("ready: ") || m.Contains(" ready: "));
        Assert.Contains("BTF /sys/kernel/btf/vmlinux present", ready);
        Assert.Contains("BPF ring buffer 16 MiB", ready);
        Assert.Contains($"{tracepoints} syscall/sched tracepoints attached", ready);
        Assert.True(tracepoints >= 20);
        Assert.Contains($"{uprobes} TLS uprobes on", ready);
        Assert.True(uprobes > 0);
        Assert.Contains(messages, m => Regex.IsMatch(m, @"attached \d+ openssl uprobes to /"));
        Assert.Contains(messages, m => m.Contains("discovery rules: 0 from " + rules));
        Assert.Contains(messages, m => m.Contains("received SIGTERM: stopping"));
        Assert.Contains(messages, m => m.Contains("stopped in"));
        // one line per event worth attention: nothing per request or per connection
        Assert.True(lines.Count < 20, $"{lines.Count} log lines:\n{string.Join("\n", lines)}");
    }
}
