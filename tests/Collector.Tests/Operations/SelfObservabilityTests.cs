using System.Globalization;
using System.Text.RegularExpressions;
using Collector.Configuration;
using Collector.Metrics;

namespace Collector.Tests.Operations;

/// <summary>/metrics text and the settings banner, without the kernel.</summary>
public sealed partial class SelfObservabilityTests
{
    /// <summary>Each sample: name, labels, value, as Prometheus' text format 0.0.4 has it.</summary>
    private static List<(string Name, Dictionary<string, string> Labels, double Value)> Parse(string text)
    {
        var samples = new List<(string, Dictionary<string, string>, double)>();
        string? family = null;
        foreach (var line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            if (line.StartsWith("# HELP ")) { family = line.Split(' ')[2]; continue; }
            if (line.StartsWith("# TYPE ")) { Assert.Equal(family, line.Split(' ')[2]); continue; }
            var m = Sample().Match(line);
            Assert.True(m.Success, $"not a sample line: {line}");
            Assert.StartsWith(family!, m.Groups["name"].Value);
            var labels = Label().Matches(m.Groups["labels"].Value).ToDictionary(l => l.Groups[1].Value, l => l.Groups[2].Value);
            samples.Add((m.Groups["name"].Value, labels, double.Parse(m.Groups["value"].Value, CultureInfo.InvariantCulture)));
        }
        return samples;
    }

    [Fact]
    public void Every_drop_shows_in_the_family_by_stage_and_reason()
    {
        var metrics = new CollectorMetrics();
        metrics.KernelDrops["ringbuf_full"].Set(7);
        metrics.CountHttpDrop("malformed_request");
        metrics.CountHttpDrop("message_too_large");
        metrics.CountHttpDrop("event_handler_error");
        metrics.KafkaMessages["shed"].Add(5);
        metrics.KafkaMessages["failed"].Add(2);
        metrics.ShedBytes.Add(1000);
        metrics.KernelDroppedBytes["beyond_capture_size"].Set(4096);

        var drops = Parse(metrics.Render()).Where(s => s.Name == "collector_drops_total")
            .ToDictionary(s => (s.Labels["stage"], s.Labels["reason"]), s => s.Value);
        Assert.Equal(7, drops[("kernel", "ringbuf_full")]);
        Assert.Equal(1, drops[("reassembly", "malformed_request")]);
        Assert.Equal(1, drops[("output", "message_too_large")]);
        Assert.Equal(1, drops[("events", "event_handler_error")]);
        Assert.Equal(5, drops[("kafka", "shed")]);
        Assert.Equal(2, drops[("kafka", "failed")]);
        var bytes = Parse(metrics.Render()).Where(s => s.Name == "collector_dropped_bytes_total")
            .ToDictionary(s => (s.Labels["stage"], s.Labels["reason"]), s => s.Value);
        Assert.Equal(1000, bytes[("reassembly", "buffer_budget")]);
        Assert.Equal(4096, bytes[("kernel", "beyond_capture_size")]);
    }

    [Fact]
    public void Sources_kafka_outcomes_and_filter_reasons_have_series_from_the_start()
    {
        var samples = Parse(new CollectorMetrics().Render());
        string[] Values(string name, string label) => samples.Where(s => s.Name == name).Select(s => s.Labels[label]).Order().ToArray();
        Assert.Equal(["gnutls", "go_tls", "openssl", "syscall"], Values("collector_events_read_total", "source"));
        Assert.Equal(["gnutls", "go_tls", "openssl", "syscall"], Values("collector_bytes_read_total", "source"));
        Assert.Equal(["delivered", "failed", "queued", "shed"], Values("collector_kafka_messages_total", "result"));
        Assert.Equal(CollectorMetrics.FilterReasons.Order(), Values("collector_exchanges_filtered_total", "reason"));
        Assert.Equal(["exec", "full"], Values("collector_process_scans_total", "trigger"));
        // the JIT's counters are the process's (this test process has compiled plenty), not this instance's
        Assert.All(samples.Where(s => s.Name.EndsWith("_total") && !s.Name.StartsWith("collector_jit_", StringComparison.Ordinal)),
            s => Assert.Equal(0, s.Value));
        Assert.All(samples.Where(s => s.Name.StartsWith("collector_jit_", StringComparison.Ordinal)), s => Assert.True(s.Value > 0, s.Name));
    }

    [Fact]
    public void Host_label_values_are_bounded_and_the_rest_fold_into_other()
    {
        var metrics = new CollectorMetrics();
        for (var i = 0; i < 250; i++) metrics.HostRequests[$"host-{i}.example"].Increment();
        var hosts = Parse(metrics.Render()).Where(s => s.Name == "collector_host_requests_total").ToList();
        // 200 hosts by name, then one "other" for the rest
        Assert.Equal(201, hosts.Count);
        Assert.Equal(50, hosts.Single(h => h.Labels["host"] == "other").Value);
        Assert.Equal(250, hosts.Sum(h => h.Value));
    }

    [Fact]
    public void Memory_budget_and_label_escaping()
    {
        var metrics = new CollectorMetrics { MemoryBudgetBytes = 800L << 20 };
        metrics.ProbesAttached["/var/lib/odd \"dir\"\\lib.so"].Set(11);
        var samples = Parse(metrics.Render());
        Assert.Equal(800L << 20, samples.Single(s => s.Name == "collector_memory_budget_bytes").Value);
        Assert.True(samples.Single(s => s.Name == "collector_process_memory_bytes").Value > 0);
        Assert.Contains("collector_probes_attached{library=\"/var/lib/odd \\\"dir\\\"\\\\lib.so\"} 11", metrics.Render());
    }

    [Fact]
    public void The_settings_in_effect_mask_secrets_and_cover_every_variable()
    {
        var env = new Dictionary<string, string?>
        {
            ["KAFKA_USERNAME"] = "alice",
            ["KAFKA_PASSWORD"] = "s3cret",
            ["IS_AUTH_IMPLEMENTED"] = "true",
            ["AKTO_KAFKA_BROKER_URL"] = "kafka:9092",
            ["TRACE_COMMS"] = " curl ",
        };
        var s = SettingsReader.Read(env);
        var effective = s.Effective.ToDictionary(e => e.Name, e => e.Value);
        Assert.Equal(SettingsReader.Variables.Select(v => v.Name), s.Effective.Select(e => e.Name));
        Assert.Equal("***", effective["KAFKA_USERNAME"]);
        Assert.Equal("***", effective["KAFKA_PASSWORD"]);
        Assert.Equal("kafka:9092", effective["AKTO_KAFKA_BROKER_URL"]);
        Assert.Equal("curl", effective["TRACE_COMMS"]);
        Assert.Equal("4096", effective["TRAFFIC_MAX_ACTIVE_CONN"]);
        Assert.Equal("unset", SettingsReader.Read(new Dictionary<string, string?>()).Effective.Single(e => e.Name == "KAFKA_PASSWORD").Value);
        // the record's ToString masks too: nothing that logs a Settings can leak them
        Assert.DoesNotContain("s3cret", s.ToString());
        Assert.DoesNotContain("alice", s.ToString());
        Assert.Contains("KAFKA_PASSWORD=***", s.ToString());
        Assert.True(SettingsReader.IsSecret("SOME_API_TOKEN"));
    }

    [GeneratedRegex(@"^(?<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?<labels>([a-zA-Z_][a-zA-Z0-9_]*=""([^""\\]|\\.)*"",?)*)\})? (?<value>-?[0-9.eE+-]+|NaN|\+Inf|-Inf)$")]
    private static partial Regex Sample();

    [GeneratedRegex(@"([a-zA-Z_][a-zA-Z0-9_]*)=""((?:[^""\\]|\\.)*)""")]
    private static partial Regex Label();
}
