using System.Diagnostics;
using Collector.Configuration;
using Collector.Tests.Support;

namespace Collector.Tests.Configuration;

/// <summary>The built collector, run as users run it, with one bad value of each family: it
/// stops before doing anything, prints one line on stderr naming the variable, and exits 2.</summary>
public sealed class ConfigurationErrorTests
{
    private static (int Code, string[] ErrLines, string Out) Run(Dictionary<string, string> env, string args = "")
    {
        var psi = new ProcessStartInfo(Repo.CollectorBinary, args)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        // nothing inherited from the test's environment may decide the outcome
        foreach (var (name, _, _) in SettingsReader.Variables) psi.Environment.Remove(name);
        psi.Environment["METRICS_BIND"] = $"127.0.0.1:{Repo.FreePort()}";
        foreach (var (k, v) in env) psi.Environment[k] = v;
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromSeconds(30)))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException("the collector did not stop on a configuration error");
        }
        p.WaitForExit();
        return (p.ExitCode, stderr.Result.Split('\n', StringSplitOptions.RemoveEmptyEntries), stdout.Result);
    }

    public static IEnumerable<object[]> BadValues() =>
    [
        ["AKTO_TRAFFIC_BATCH_SIZE", "lots", null!],
        ["KAFKA_POLL_INTERVAL", "soon", null!],
        ["TRAFFIC_BUFFER_THRESHOLD", "600MB", null!],
        ["AKTO_KAFKA_BROKER_URL", "kafka://broker:9092", null!],
        ["AKTO_KAFKA_TOPIC_NAME", "bad topic", null!],
        ["AKTO_MODULE_DISCOVERY_CONFIG", "[{\"key\":{\"eq\":\"x-tenant\",\"ifAbsent\":\"reject\"},\"value\":{\"regex\":\"(unclosed\"}}]", "rule 0 (x-tenant)"],
        ["AKTO_MODULE_DISCOVERY_CONFIG", "[{\"key\":", "not valid JSON"],
        ["SENSITIVE_DATA_POLICY", "/nonexistent/policy.yaml", "neither off, default nor a readable policy file"],
        ["SENSITIVE_DATA_MASK_KEY", "hunter2", "shorter than 16 characters"],
        ["AKTO_HEADER_VALUE_FILTER", "[\"x-env\"]", null!],
        ["TRACE_COMMS", "a,b,c,d,e,f,g,h,i", null!],
        ["METRICS_BIND", "localhost:9176", null!],
        ["LOG_FORMAT", "xml", null!],
        ["AKTO_VXLAN_ID", "vx-1", null!],
        ["IS_AUTH_IMPLEMENTED", "true", "KAFKA_USERNAME"],
        ["AKTO_MONGO_CONN", "mongodb://akto:hunter2@mongo:port/admini", "not a MongoDB connection string"],
        ["AKTO_MONGO_REFRESH_SECS", "soon", null!],
        ["AKTO_HEADER_VALUE_FILTER", "{\"x-env\":\"prod\",\"X-Env\":\"staging\"}", "listed twice"],
        ["TLS_CA_CERT_PATH", "/nonexistent/ca.crt", null!],
    ];

    [Theory]
    [MemberData(nameof(BadValues))]
    public void A_bad_value_stops_start_up_with_one_line_naming_the_variable(string name, string value, string? detail)
    {
        var env = new Dictionary<string, string> { [name] = value };
        if (name == "TLS_CA_CERT_PATH") env["USE_TLS"] = "true";
        var (code, err, stdout) = Run(env);
        Assert.Equal(2, code);
        var line = Assert.Single(err);
        Assert.StartsWith($"configuration error: {name}: ", line);
        if (detail is not null) Assert.Contains(detail, line);
        Assert.DoesNotContain("hunter2", line);
        Assert.Equal("", stdout);
    }

    [Fact]
    public void Help_lists_every_variable_with_its_default()
    {
        var (code, err, stdout) = Run([], "--help");
        Assert.Equal(0, code);
        Assert.Empty(err);
        foreach (var (name, dflt, _) in SettingsReader.Variables)
            Assert.Matches($@"(?m)^\s+{name}\s+{System.Text.RegularExpressions.Regex.Escape(dflt)}\s", stdout);
    }
}
