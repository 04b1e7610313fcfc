using Collector.Configuration;
using Collector.Metrics;
using Collector.Sensitive;
using Collector.Tests.Support;

namespace Collector.Tests.Sensitive;

/// <summary>SENSITIVE_DATA_POLICY: its values, the policy file's validation (one line naming the
/// problem) and its reloads.</summary>
public class PolicyTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("sensitive-policy-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string File(string name, string text)
    {
        var path = Path.Combine(_dir, name);
        System.IO.File.WriteAllText(path, text);
        return path;
    }

    private static Settings Read(params (string, string)[] env) =>
        SettingsReader.Read(env.ToDictionary(e => e.Item1, e => (string?)e.Item2));

    [Fact]
    public void Off_is_the_default_and_default_is_every_built_in_reporting()
    {
        Assert.Equal((null, null), SensitivePolicyFile.Load(Read()));
        var (policy, text) = SensitivePolicyFile.Load(Read(("SENSITIVE_DATA_POLICY", "default")));
        Assert.Null(text);
        Assert.Equal(Categories.BuiltInCount, policy!.Rules.Count);
        Assert.All(policy.Rules, r => Assert.Equal(SensitiveAction.Report, r.Action));
        Assert.Equal(ValueScanner.AllBuiltIns, policy.BuiltInsOn);
    }

    [Fact]
    public void Yaml_and_json_files_give_the_same_policy()
    {
        var yaml = SensitivePolicy.Parse("""
            mask:
              with: fixed
              text: "[X]"
            categories:
              CREDIT_CARD: {action: mask, endpoints: ["*/pay/**"]}
              UUID: {action: off}
              ORDER_REF: {values: "ORD-[0-9]+", action: drop}
            """, "a.yaml");
        var json = SensitivePolicy.Parse("""
            {"mask": {"with": "fixed", "text": "[X]"},
             "categories": {"CREDIT_CARD": {"action": "mask", "endpoints": ["*/pay/**"]}, "UUID": {"action": "off"},
                            "ORDER_REF": {"values": "ORD-[0-9]+", "action": "drop"}}}
            """, "a.json");
        foreach (var p in new[] { yaml, json })
        {
            Assert.Equal(MaskStyle.Fixed, p.MaskStyle);
            Assert.Equal("[X]", p.FixedMask);
            Assert.Equal(SensitiveAction.Mask, p.ById[(int)BuiltIn.CreditCard]!.Action);
            Assert.Null(p.ById[(int)BuiltIn.Uuid]);
            Assert.Equal(0u, p.BuiltInsOn & (1u << (int)BuiltIn.Uuid));
            Assert.Equal("ORD-[0-9]+", p.Custom.Single().Values!.ToString());
            Assert.True(p.ById[(int)BuiltIn.CreditCard]!.Endpoints.Single().Matches("shop", "/pay/v1/cards"));
            Assert.False(p.ById[(int)BuiltIn.CreditCard]!.Endpoints.Single().Matches("shop", "/api/pay"));
        }
    }

    [Theory]
    [InlineData("categories:\n  CREDIT_CARD: {action: hide}\n", "categories.CREDIT_CARD.action: 'hide' is not one of off, report, mask, drop")]
    [InlineData("categories:\n  PASSPORT: {action: mask}\n", "categories.PASSPORT: not a built-in category")]
    [InlineData("categories:\n  bad-name: {values: x}\n", "categories.bad-name: a custom category's name is 1-64 of A-Z, 0-9 and _")]
    [InlineData("categories:\n  X: {values: '(a'}\n", "categories.X.values: '(a' is not a usable regular expression")]
    [InlineData("categories:\n  X: {values: '(a)\\1'}\n", "categories.X.values:")]
    [InlineData("categories:\n  EMAIL: {endpoints: ['no-slash']}\n", "categories.EMAIL.endpoints: 'no-slash' is not host/path")]
    [InlineData("categories:\n  EMAIL: {colour: red}\n", "categories.EMAIL: unknown key 'colour'")]
    [InlineData("mask: {with: rot13}\n", "mask.with: 'rot13' is neither hmac nor fixed")]
    [InlineData("mask: {with: fixed, text: 'a\"b'}\n", "mask.text:")]
    [InlineData("builtins: some\n", "builtins: 'some' is neither all nor listed")]
    [InlineData("rules: []\n", "unknown top-level key 'rules'")]
    [InlineData("- a\n- b\n", "the policy must be a mapping")]
    [InlineData("categories: [\n", "not valid YAML at line")]
    [InlineData("{\"categories\": }", "not valid JSON")]
    public void A_bad_policy_file_stops_start_up_with_one_line_naming_the_setting(string text, string problem)
    {
        var path = File("policy.yaml", text);
        var e = Assert.Throws<SettingsException>(() => Read(("SENSITIVE_DATA_POLICY", path)));
        Assert.Equal("SENSITIVE_DATA_POLICY", e.Variable);
        Assert.StartsWith($"configuration error: SENSITIVE_DATA_POLICY: {path}: ", e.Message);
        Assert.Contains(problem, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void A_missing_file_and_a_missing_or_weak_key_are_named()
    {
        var e = Assert.Throws<SettingsException>(() => Read(("SENSITIVE_DATA_POLICY", "/nonexistent/policy.yaml")));
        Assert.Equal("SENSITIVE_DATA_POLICY", e.Variable);
        Assert.Contains("neither off, default nor a readable policy file", e.Message);
        var masks = File("masks.yaml", "categories:\n  EMAIL: {action: mask}\n");
        e = Assert.Throws<SettingsException>(() => Read(("SENSITIVE_DATA_POLICY", masks)));
        Assert.Equal("SENSITIVE_DATA_MASK_KEY", e.Variable);
        e = Assert.Throws<SettingsException>(() => Read(("SENSITIVE_DATA_POLICY", masks), ("SENSITIVE_DATA_MASK_KEY", "short")));
        Assert.Equal("SENSITIVE_DATA_MASK_KEY", e.Variable);
        var s = Read(("SENSITIVE_DATA_POLICY", masks), ("SENSITIVE_DATA_MASK_KEY", "a-long-enough-secret"));
        Assert.Equal(masks, s.SensitiveDataPolicy);
        Assert.Contains(("SENSITIVE_DATA_MASK_KEY", SettingsReader.Masked), s.Effective);
        // a fixed mask needs no key
        Read(("SENSITIVE_DATA_POLICY", File("fixed.yaml", "mask: {with: fixed}\ncategories:\n  EMAIL: {action: mask}\n")));
    }

    [Fact]
    public void Every_setting_is_in_the_readme_configuration_table()
    {
        var readme = System.IO.File.ReadAllText(Path.Combine(Repo.Root, "README.md"));
        foreach (var name in new[] { "SENSITIVE_DATA_POLICY", "SENSITIVE_DATA_MASK_KEY", "SENSITIVE_METRICS_MAX_SERIES" })
            Assert.Contains($"| `{name}` |", readme);
    }

    [Fact]
    public void A_changed_file_is_reloaded_and_a_bad_one_refused_keeping_the_policy_in_effect()
    {
        var path = File("policy.yaml", "categories:\n  EMAIL: {action: report}\n");
        var (initial, text) = SensitivePolicyFile.Load(Read(("SENSITIVE_DATA_POLICY", path)));
        var source = new SensitivePolicySource(initial);
        var metrics = new SensitiveMetrics(10);
        var log = new ListLogger();
        var file = new SensitivePolicyFile(path, text!, source, metrics, hasKey: false, log);

        file.Check(); // unchanged: nothing happens
        Assert.Same(initial, source.Current);
        Assert.Equal(0, metrics.PolicyReloads.Value);

        System.IO.File.WriteAllText(path, "mask: {with: fixed}\ncategories:\n  EMAIL: {action: mask}\n");
        file.Check();
        Assert.NotSame(initial, source.Current);
        Assert.Equal(SensitiveAction.Mask, source.Current!.ById[(int)BuiltIn.Email]!.Action);
        Assert.Equal(1, metrics.PolicyReloads.Value);
        var good = source.Current;

        System.IO.File.WriteAllText(path, "categories:\n  EMAIL: {action: explode}\n");
        file.Check();
        file.Check(); // the same bad text is refused once
        Assert.Same(good, source.Current);
        Assert.Equal(1, metrics.PolicyReloadFailures.Value);
        Assert.Contains(log.Lines, l => l.Text.Contains("refused the new sensitive-data policy") && l.Text.Contains("explode"));

        // a masking policy that needs the key the collector was not given is refused too
        System.IO.File.WriteAllText(path, "categories:\n  SSN: {action: mask}\n");
        file.Check();
        Assert.Same(good, source.Current);
        Assert.Equal(2, metrics.PolicyReloadFailures.Value);

        System.IO.File.Delete(path);
        file.Check();
        Assert.Same(good, source.Current);
        Assert.Equal(3, metrics.PolicyReloadFailures.Value);
    }

    [Fact]
    public async Task Reloads_run_on_their_own_until_stopped()
    {
        var path = File("policy.json", "{\"categories\": {\"EMAIL\": {\"action\": \"report\"}}}");
        var (initial, text) = SensitivePolicyFile.Load(Read(("SENSITIVE_DATA_POLICY", path)));
        var source = new SensitivePolicySource(initial);
        var metrics = new SensitiveMetrics(10);
        var file = new SensitivePolicyFile(path, text!, source, metrics, hasKey: false, new ListLogger(), TimeSpan.FromMilliseconds(50));
        using var stop = new CancellationTokenSource();
        var run = Task.Run(() => file.RunAsync(stop.Token));
        System.IO.File.WriteAllText(path, "{\"builtins\": \"listed\", \"categories\": {\"SSN\": {\"action\": \"drop\"}}}");
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (metrics.PolicyReloads.Value == 0 && DateTime.UtcNow < deadline) await Task.Delay(20);
        stop.Cancel();
        await run;
        Assert.Equal(SensitiveAction.Drop, source.Current!.ById[(int)BuiltIn.Ssn]!.Action);
        Assert.Single(source.Current.Rules);
    }
}
