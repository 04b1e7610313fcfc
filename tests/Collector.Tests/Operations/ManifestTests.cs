using System.Net;
using System.Text.RegularExpressions;
using Collector.Configuration;
using Collector.Filtering;
using Collector.Metrics;
using Collector.Tests.Support;
using Microsoft.Extensions.Logging.Abstractions;
using YamlDotNet.RepresentationModel;

namespace Collector.Tests.Operations;

/// <summary>Everything under daemonset/ checked offline against the code: the kinds, the variables
/// the manifests set, ports and probe paths, least privilege, the dashboard's metrics.</summary>
public sealed partial class ManifestTests
{
    private const string Namespace = "akto-collector";
    private readonly Manifests _m = new();

    private static readonly Dictionary<string, (string ApiVersion, string Kind)[]> Expected = new()
    {
        ["namespace.yaml"] = [("v1", "Namespace")],
        ["serviceaccount.yaml"] = [("v1", "ServiceAccount")],
        ["configmap.yaml"] = [("v1", "ConfigMap"), ("v1", "ConfigMap"), ("v1", "ConfigMap")],
        ["daemonset.yaml"] = [("apps/v1", "DaemonSet")],
        ["service.yaml"] = [("v1", "Service")],
        ["servicemonitor.yaml"] = [("monitoring.coreos.com/v1", "ServiceMonitor")],
        ["networkpolicy.yaml"] = [("networking.k8s.io/v1", "NetworkPolicy"), ("v1", "ConfigMap")],
        ["secret.example.yaml"] = [("v1", "Secret"), ("v1", "Secret")],
        ["kustomization.yaml"] = [("kustomize.config.k8s.io/v1beta1", "Kustomization")],
    };

    private YamlMappingNode DaemonSet => _m.Single("DaemonSet");
    private YamlNode PodSpec => DaemonSet.At("spec", "template", "spec");
    private YamlNode Container => Assert.Single(PodSpec.Items("containers"));
    private YamlMappingNode SettingsConfigMap => _m.Single("ConfigMap", "akto-collector-config");

    private static readonly HashSet<string> KnownVariables = SettingsReader.Variables.Select(v => v.Name).ToHashSet(StringComparer.Ordinal);

    [Fact]
    public void Every_manifest_is_well_formed_yaml_of_the_expected_kinds()
    {
        Assert.Equal(Expected.Keys.Order(), _m.Files.Keys.Order());
        foreach (var (file, docs) in _m.Files)
        {
            Assert.Equal(Expected[file].Length, docs.Count);
            for (var i = 0; i < docs.Count; i++)
            {
                Assert.Equal(Expected[file][i].ApiVersion, docs[i].Str("apiVersion"));
                Assert.Equal(Expected[file][i].Kind, docs[i].Str("kind"));
                if (docs[i].Str("kind") == "Kustomization") continue;
                Assert.Matches("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", docs[i].Str("metadata", "name"));
                if (docs[i].Str("kind") != "Namespace")
                    Assert.Equal(Namespace, docs[i].Str("metadata", "namespace"));
            }
        }
        Assert.Equal(Namespace, _m.Single("Namespace").Str("metadata", "name"));
    }

    [Fact]
    public void The_kustomization_lists_every_manifest_but_the_example_secret()
    {
        var k = _m.Single("Kustomization");
        var resources = k.Items("resources").Select(r => ((YamlScalarNode)r).Value!).ToList();
        var expected = _m.Files.Keys.Where(f => f is not ("kustomization.yaml" or "secret.example.yaml")).Order();
        Assert.Equal(expected, resources.Order());
        Assert.Equal(Namespace, k.Str("namespace"));
        var image = Container.Str("image");
        Assert.Contains(k.Items("images"), i => image.StartsWith(i.Str("name") + ":", StringComparison.Ordinal));
    }

    /// <summary>Every variable set anywhere a user configures the collector is one it reads.</summary>
    [Fact]
    public void Every_variable_set_in_the_manifests_and_the_unit_is_one_the_collector_reads()
    {
        var set = new List<(string Where, string Name)>();
        foreach (var e in Container.Items("env")) set.Add(("daemonset.yaml env", e.Str("name")));
        foreach (var (k, _) in SettingsConfigMap.Pairs("data")) set.Add(("configmap.yaml", ((YamlScalarNode)k).Value!));
        // the commented-out examples are what users uncomment
        foreach (Match m in CommentedVariable().Matches(Manifests.ReadText("configmap.yaml")))
            set.Add(("configmap.yaml (commented)", m.Groups[1].Value));
        foreach (var secret in _m.All.Where(d => d.Str("kind") == "Secret"))
            foreach (var (k, _) in secret.Pairs("stringData")) set.Add(("secret.example.yaml", ((YamlScalarNode)k).Value!));
        foreach (var (name, _) in SystemdUnit.Environment()) set.Add(("akto-collector.service", name));
        foreach (var (name, _) in ReadmeEnvFile()) set.Add(("README.md env file", name));

        Assert.True(set.Count > 30, $"only {set.Count} variables found: the parsing missed something");
        var unknown = set.Where(s => !KnownVariables.Contains(s.Name)).ToList();
        Assert.True(unknown.Count == 0, "unknown to the collector: " + string.Join(", ", unknown.Select(u => $"{u.Name} ({u.Where})")));
        Assert.Contains(set, s => s.Name == "AKTO_MODULE_DISCOVERY_CONFIG_PATH");
    }

    /// <summary>The values the manifests set parse as the collector parses them at start-up.</summary>
    [Fact]
    public void The_settings_the_manifests_and_the_unit_set_are_accepted_by_the_collector()
    {
        var env = new Dictionary<string, string?>();
        foreach (var (k, v) in SettingsConfigMap.Pairs("data")) env[((YamlScalarNode)k).Value!] = ((YamlScalarNode)v).Value;
        foreach (var e in Container.Items("env"))
            if (e.Get("value") is YamlScalarNode v) env[e.Str("name")] = v.Value;
        var s = SettingsReader.Read(env);
        Assert.Equal(9176, Port(s.MetricsBind));
        Assert.True(s.LogJson);

        var unit = SystemdUnit.Environment().ToDictionary(e => e.Name, e => (string?)e.Value);
        Assert.True(SettingsReader.Read(unit).ProbeAllPid);

        foreach (var (name, value) in ReadmeEnvFile())
            SettingsReader.Read(new Dictionary<string, string?> { [name] = value });
    }

    [Fact]
    public void Ports_and_probe_paths_are_the_ones_the_code_serves()
    {
        var defaultPort = Port(new Settings().MetricsBind);
        var port = Assert.Single(Container.Items("ports"));
        Assert.Equal("metrics", port.Str("name"));
        Assert.Equal(defaultPort, port.Int("containerPort"));
        Assert.Equal(defaultPort, Port(SettingsConfigMap.Str("data", "METRICS_BIND")));

        Assert.Equal(CollectorHost.HealthPath, Container.Str("livenessProbe", "httpGet", "path"));
        Assert.Equal(CollectorHost.ReadyPath, Container.Str("readinessProbe", "httpGet", "path"));
        Assert.Equal("metrics", Container.Str("livenessProbe", "httpGet", "port"));
        Assert.Equal("metrics", Container.Str("readinessProbe", "httpGet", "port"));

        var service = _m.Single("Service");
        var sp = Assert.Single(service.Items("spec", "ports"));
        Assert.Equal(defaultPort, sp.Int("port"));
        Assert.Equal("metrics", sp.Str("targetPort"));
        Assert.Equal("metrics", sp.Str("name"));
        Assert.Equal("None", service.Str("spec", "clusterIP"));

        var endpoint = Assert.Single(_m.Single("ServiceMonitor").Items("spec", "endpoints"));
        Assert.Equal("metrics", endpoint.Str("port"));
        Assert.Equal(CollectorHost.MetricsPath, endpoint.Str("path"));

        Assert.Matches($@"(?m)^EXPOSE {defaultPort}\s*$", File.ReadAllText(Path.Combine(Repo.Root, "Dockerfile")));
    }

    /// <summary>The probe paths really answer: the status endpoint of the code, started on loopback.</summary>
    [Fact]
    public async Task The_status_endpoint_answers_the_paths_the_manifests_probe()
    {
        var paths = new[]
        {
            Container.Str("livenessProbe", "httpGet", "path"), Container.Str("readinessProbe", "httpGet", "path"),
            Assert.Single(_m.Single("ServiceMonitor").Items("spec", "endpoints")).Str("path"),
        };
        var port = Repo.FreePort();
        var state = new CollectorHost.ReadinessState();
        var metrics = new CollectorMetrics();
        var app = await CollectorHost.StartStatusEndpoint(new Settings { MetricsBind = $"127.0.0.1:{port}" }, metrics, state,
            NullLoggerFactory.Instance);
        try
        {
            using var http = new HttpClient();
            async Task<HttpStatusCode> Get(string path) => (await http.GetAsync($"http://127.0.0.1:{port}{path}")).StatusCode;
            Assert.Equal(HttpStatusCode.NotFound, await Get("/no-such-path"));
            Assert.Equal(HttpStatusCode.OK, await Get(paths[0]));
            Assert.Equal(HttpStatusCode.ServiceUnavailable, await Get(paths[1]));
            state.Ready = true;
            Assert.Equal(HttpStatusCode.OK, await Get(paths[1]));
            var text = await http.GetStringAsync($"http://127.0.0.1:{port}{paths[2]}");
            Assert.Contains("# TYPE collector_exchanges_emitted_total counter", text);
        }
        finally
        {
            await app.StopAsync();
            await app.DisposeAsync();
        }
    }

    [Fact]
    public void The_daemonset_holds_only_the_capabilities_the_readme_lists_and_is_not_privileged()
    {
        var readme = Readme.Capabilities();
        Assert.True(readme.Count >= 3, "the README's capability table was not found");
        var sc = Container.At("securityContext");
        var added = sc.Items("capabilities", "add").Select(c => ((YamlScalarNode)c).Value!).ToList();
        Assert.Equal(readme.Order(), added.Order());
        Assert.Equal(["ALL"], sc.Items("capabilities", "drop").Select(c => ((YamlScalarNode)c).Value!));
        Assert.False(sc.Bool("privileged"));
        Assert.False(sc.Bool("allowPrivilegeEscalation"));
        Assert.True(sc.Bool("readOnlyRootFilesystem"));
        Assert.True(PodSpec.Bool("hostPID"));
        Assert.Null(PodSpec.Get("hostNetwork"));
        Assert.Null(PodSpec.Get("hostIPC"));

        // the systemd unit holds the same ones, and nothing else
        var unitCaps = SystemdUnit.Values("AmbientCapabilities").SelectMany(v => v.Split(' ', StringSplitOptions.RemoveEmptyEntries)).ToList();
        var bounding = SystemdUnit.Values("CapabilityBoundingSet").SelectMany(v => v.Split(' ', StringSplitOptions.RemoveEmptyEntries)).ToList();
        Assert.Equal(readme.Select(c => "CAP_" + c).Order(), unitCaps.Order());
        Assert.Equal(readme.Select(c => "CAP_" + c).Order(), bounding.Order());
        Assert.Equal(["yes"], SystemdUnit.Values("NoNewPrivileges"));
    }

    [Fact]
    public void The_daemonset_writes_only_to_an_emptyDir_and_reads_the_host_paths_it_needs()
    {
        var volumes = PodSpec.Items("volumes").ToDictionary(v => v.Str("name"));
        var mounts = Container.Items("volumeMounts").ToList();
        foreach (var mount in mounts)
        {
            var volume = volumes[mount.Str("name")];
            if (volume.Get("emptyDir") is not null) continue;
            Assert.True(mount.Bool("readOnly"), $"{mount.Str("mountPath")} is writable");
        }
        // the .NET runtime needs a writable /tmp on a read-only root
        Assert.Contains(mounts, m => m.Str("mountPath") == "/tmp" && volumes[m.Str("name")].Get("emptyDir") is not null);

        string HostPathMountedAt(string hostPath) =>
            mounts.Single(m => volumes[m.Str("name")].Get("hostPath") is { } h && h.Str("path") == hostPath).Str("mountPath");
        Assert.Equal("/sys/kernel/btf", HostPathMountedAt("/sys/kernel/btf"));
        Assert.Equal("/sys/kernel/tracing", HostPathMountedAt("/sys/kernel/tracing"));
        var hostProc = Container.Items("env").Single(e => e.Str("name") == "HOST_PROC").Str("value");
        Assert.Equal(HostPathMountedAt("/proc"), hostProc);
        Assert.NotEqual("/proc", hostProc);
    }

    [Fact]
    public void The_discovery_rules_file_is_mounted_where_the_settings_point_and_parses()
    {
        var path = SettingsConfigMap.Str("data", "AKTO_MODULE_DISCOVERY_CONFIG_PATH");
        var volumes = PodSpec.Items("volumes").ToDictionary(v => v.Str("name"));
        var mount = Container.Items("volumeMounts").Single(m => m.Str("name") == "discovery-rules");
        Assert.Equal(Path.GetDirectoryName(path), mount.Str("mountPath"));
        var cm = volumes[mount.Str("name")].At("configMap");
        var item = Assert.Single(cm.Items("items"));
        Assert.Equal(Path.GetFileName(path), item.Str("path"));
        var rules = _m.Single("ConfigMap", cm.Str("name")).Str("data", item.Str("key"));
        Assert.Empty(DiscoveryRules.Parse(rules)); // [] keeps everything
        Assert.Null(SettingsConfigMap.Get("data")!.Get("AKTO_MODULE_DISCOVERY_CONFIG"));
    }

    [Fact]
    public void The_example_sensitive_data_policy_is_mounted_where_its_setting_points_and_validates()
    {
        var volumes = PodSpec.Items("volumes").ToDictionary(v => v.Str("name"));
        var mount = Container.Items("volumeMounts").Single(m => m.Str("name") == "sensitive-policy");
        var cm = volumes[mount.Str("name")].At("configMap");
        var item = Assert.Single(cm.Items("items"));
        var path = Path.Combine(mount.Str("mountPath"), item.Str("path"));
        // the setting is off by default; the commented line is the one to uncomment
        Assert.Equal("off", SettingsConfigMap.Str("data", "SENSITIVE_DATA_POLICY"));
        Assert.Contains($"# SENSITIVE_DATA_POLICY: \"{path}\"", Manifests.ReadText("configmap.yaml"));
        var text = _m.Single("ConfigMap", cm.Str("name")).Str("data", item.Str("key"));
        var policy = Collector.Sensitive.SensitivePolicyFile.Validate(text, path, hasKey: true);
        Assert.Contains(policy.Rules, r => r.Name == "CREDIT_CARD" && r.Action == Collector.Sensitive.SensitiveAction.Mask);
        Assert.Contains(policy.Rules, r => !r.IsBuiltIn);
        // it masks with the keyed hash: the key comes from the Secret, and without it the policy is refused
        Assert.Throws<Collector.Sensitive.SensitivePolicyException>(() => Collector.Sensitive.SensitivePolicyFile.Validate(text, path, hasKey: false));
        var key = Container.Items("env").Single(e => e.Str("name") == "SENSITIVE_DATA_MASK_KEY");
        Assert.Equal("akto-collector-kafka", key.Str("valueFrom", "secretKeyRef", "name"));
        Assert.False(string.IsNullOrEmpty(_m.Single("Secret", "akto-collector-kafka").Str("stringData", "SENSITIVE_DATA_MASK_KEY"))); // the example Secret holds it
    }

    /// <summary>/metrics names endpoints and what they leak: only the monitoring namespace (a
    /// kustomize value) may reach the metrics port, and nothing else may reach the pod.</summary>
    [Fact]
    public void Only_the_monitoring_namespace_reaches_the_metrics_port()
    {
        var policy = _m.Single("NetworkPolicy");
        var podLabels = DaemonSet.Pairs("spec", "template", "metadata", "labels").ToDictionary(p => p.Key.ToString(), p => p.Value.ToString());
        foreach (var (k, v) in policy.Pairs("spec", "podSelector", "matchLabels"))
            Assert.Equal(podLabels[k.ToString()], v.ToString());
        Assert.Equal(["Ingress"], policy.Items("spec", "policyTypes").Select(t => t.ToString()));
        var rule = Assert.Single(policy.Items("spec", "ingress"));
        var peer = Assert.Single(rule.Items("from"));
        Assert.Null(peer.Get("ipBlock"));
        Assert.Null(peer.Get("podSelector")); // the namespace alone, as the docs say
        var selector = peer.At("namespaceSelector", "matchLabels");
        var namespaceLabel = Assert.Single(((YamlMappingNode)selector).Children);
        Assert.Equal("kubernetes.io/metadata.name", namespaceLabel.Key.ToString());
        var port = Assert.Single(rule.Items("ports"));
        Assert.Equal("TCP", port.Str("protocol"));
        Assert.Equal(Port(SettingsConfigMap.Str("data", "METRICS_BIND")), port.Int("port"));
        var containerPort = Container.Items("ports").Single(p => p.Str("name") == "metrics");
        Assert.Equal(containerPort.Int("containerPort"), port.Int("port"));

        // the namespace is the kustomize value: the local-config ConfigMap feeds the replacement into exactly that field
        var value = _m.Single("ConfigMap", "akto-collector-monitoring");
        Assert.Equal("true", value.Str("metadata", "annotations", "config.kubernetes.io/local-config"));
        Assert.Equal(value.Str("data", "namespace"), namespaceLabel.Value.ToString());
        var replacement = Assert.Single(_m.Single("Kustomization").Items("replacements"));
        Assert.Equal("ConfigMap", replacement.Str("source", "kind"));
        Assert.Equal("akto-collector-monitoring", replacement.Str("source", "name"));
        Assert.Equal("data.namespace", replacement.Str("source", "fieldPath"));
        var target = Assert.Single(replacement.Items("targets"));
        Assert.Equal("NetworkPolicy", target.Str("select", "kind"));
        Assert.Equal(policy.Str("metadata", "name"), target.Str("select", "name"));
        Assert.Equal(["spec.ingress.0.from.0.namespaceSelector.matchLabels.[kubernetes.io/metadata.name]"],
            target.Items("fieldPaths").Select(f => f.ToString()));
        Assert.Contains("NetworkPolicy", File.ReadAllText(Path.Combine(Repo.Root, "README.md")));
    }

    [Fact]
    public void References_between_the_manifests_resolve()
    {
        var podLabels = DaemonSet.Pairs("spec", "template", "metadata", "labels").ToDictionary(p => p.Key.ToString(), p => p.Value.ToString());
        foreach (var (k, v) in DaemonSet.Pairs("spec", "selector", "matchLabels")) Assert.Equal(v.ToString(), podLabels[k.ToString()]);

        var service = _m.Single("Service");
        foreach (var (k, v) in service.Pairs("spec", "selector")) Assert.Equal(v.ToString(), podLabels[k.ToString()]);
        var monitor = _m.Single("ServiceMonitor");
        var serviceLabels = service.Pairs("metadata", "labels").ToDictionary(p => p.Key.ToString(), p => p.Value.ToString());
        foreach (var (k, v) in monitor.Pairs("spec", "selector", "matchLabels")) Assert.Equal(v.ToString(), serviceLabels[k.ToString()]);
        Assert.Contains(monitor.Items("spec", "namespaceSelector", "matchNames"), n => n.ToString() == Namespace);

        Assert.Equal(_m.Single("ServiceAccount").Str("metadata", "name"), PodSpec.Str("serviceAccountName"));
        Assert.False(PodSpec.Bool("automountServiceAccountToken"));
        var envFrom = Assert.Single(Container.Items("envFrom"));
        Assert.Equal(SettingsConfigMap.Str("metadata", "name"), envFrom.Str("configMapRef", "name"));

        // every secret the container reads comes from a Secret of secret.example.yaml that has that
        // key, and is optional (the pods start without it)
        var secrets = _m.All.Where(d => d.Str("kind") == "Secret")
            .ToDictionary(d => d.Str("metadata", "name"), d => d.Pairs("stringData").Select(p => p.Key.ToString()).ToHashSet());
        var refs = Container.Items("env").Where(e => e.Get("valueFrom")?.Get("secretKeyRef") is not null).ToList();
        Assert.Equal(["AKTO_MONGO_CONN", "KAFKA_PASSWORD", "KAFKA_USERNAME", "SENSITIVE_DATA_MASK_KEY"], refs.Select(e => e.Str("name")).Order());
        foreach (var r in refs)
        {
            Assert.Contains(r.Str("valueFrom", "secretKeyRef", "key"), secrets[r.Str("valueFrom", "secretKeyRef", "name")]);
            Assert.Equal(r.Str("name"), r.Str("valueFrom", "secretKeyRef", "key"));
            Assert.True(r.Bool("valueFrom", "secretKeyRef", "optional"));
        }
        Assert.Equal("akto-collector-kafka", refs.Single(e => e.Str("name") == "KAFKA_PASSWORD").Str("valueFrom", "secretKeyRef", "name"));
        Assert.Equal("akto-collector-mongo", refs.Single(e => e.Str("name") == "AKTO_MONGO_CONN").Str("valueFrom", "secretKeyRef", "name"));
        // credentials never sit in the ConfigMap, not even as a commented example to uncomment (the
        // container's env would win over it anyway)
        foreach (var name in new[] { "KAFKA_PASSWORD", "KAFKA_USERNAME", "AKTO_MONGO_CONN" })
        {
            Assert.Null(SettingsConfigMap.At("data").Get(name));
            Assert.DoesNotContain(CommentedVariable().Matches(Manifests.ReadText("configmap.yaml")), m => m.Groups[1].Value == name);
        }

        Assert.Equal("spec.nodeName", Container.Items("env").Single(e => e.Str("name") == "NODE_NAME").Str("valueFrom", "fieldRef", "fieldPath"));
        Assert.Equal("metadata.name", Container.Items("env").Single(e => e.Str("name") == "POD_NAME").Str("valueFrom", "fieldRef", "fieldPath"));
        Assert.Contains(PodSpec.Items("tolerations"), t => t.Str("operator") == "Exists" && t.Get("key") is null);
    }

    [Fact]
    public void Grace_period_and_memory_limit_leave_room_for_what_the_collector_does()
    {
        var grace = PodSpec.Int("terminationGracePeriodSeconds");
        var flush = double.Parse(SettingsConfigMap.Str("data", "SHUTDOWN_GRACE_SECS"), System.Globalization.CultureInfo.InvariantCulture);
        var preStop = Container.Items("lifecycle", "preStop", "exec", "command").Select(c => c.ToString()).ToList();
        Assert.Equal("sleep", preStop[0]);
        Assert.True(grace > flush + int.Parse(preStop[1]) + 5, $"terminationGracePeriodSeconds {grace} leaves no room after a {flush} s flush");
        Assert.Contains(SystemdUnit.Values("TimeoutStopSec"), v => int.Parse(v) > flush + 5);

        var limit = Container.Str("resources", "limits", "memory");
        Assert.Matches("^[0-9]+(Mi|Gi)$", limit);
        var limitMb = limit.EndsWith("Gi") ? int.Parse(limit[..^2]) * 1024 : int.Parse(limit[..^2]);
        var restartMb = int.Parse(SettingsConfigMap.Str("data", "AKTO_MEM_THRESH_RESTART"));
        Assert.True(restartMb < limitMb, $"AKTO_MEM_THRESH_RESTART {restartMb} MB is not under the {limitMb} MiB limit");
        Assert.NotNull(Container.At("resources", "requests", "cpu"));
    }

    [Fact]
    public void The_grafana_dashboard_parses_and_queries_only_metrics_the_collector_renders()
    {
        var dashboard = Dashboard.Load();
        Assert.True(dashboard.Queries.Count >= 10, $"only {dashboard.Queries.Count} queries found");
        var rendered = RenderedMetricNames();
        foreach (var metric in dashboard.Metrics)
            Assert.True(rendered.Contains(metric), $"the dashboard queries {metric}, which /metrics does not render");
        var ids = dashboard.Panels.Select(p => p.GetProperty("id").GetInt32()).ToList();
        Assert.Equal(ids.Count, ids.Distinct().Count());
        foreach (var p in dashboard.Panels.Where(p => p.TryGetProperty("targets", out _)))
            Assert.Equal("${DS_PROMETHEUS}", p.GetProperty("datasource").GetProperty("uid").GetString());
    }

    [Fact]
    public void The_readme_documents_every_metric_family_the_collector_renders_with_its_type()
    {
        var rendered = new Dictionary<string, string>();
        foreach (var line in new CollectorMetrics().Render().Split('\n'))
            if (Regex.Match(line, @"^# TYPE (\S+) (\S+)$") is { Success: true } m) rendered[m.Groups[1].Value] = m.Groups[2].Value;
        var documented = Regex.Matches(Readme.Section("### Metrics"), @"^\| `(collector_[a-z0-9_]+)` \| (\w+) \|", RegexOptions.Multiline)
            .ToDictionary(m => m.Groups[1].Value, m => m.Groups[2].Value);
        Assert.Equal(rendered.Keys.Order(), documented.Keys.Order());
        foreach (var (name, type) in rendered) Assert.Equal(type, documented[name]);
    }

    /// <summary>Sample names /metrics can carry: each family's name, histograms' suffixes.</summary>
    internal static HashSet<string> RenderedMetricNames()
    {
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var line in new CollectorMetrics().Render().Split('\n'))
        {
            var m = Regex.Match(line, @"^# TYPE (\S+) (\S+)$");
            if (!m.Success) continue;
            names.Add(m.Groups[1].Value);
            if (m.Groups[2].Value == "histogram")
                foreach (var suffix in new[] { "_bucket", "_sum", "_count" }) names.Add(m.Groups[1].Value + suffix);
        }
        return names;
    }

    private static int Port(string bind) => int.Parse(bind[(bind.LastIndexOf(':') + 1)..]);

    /// <summary>VARIABLE=value lines of the env-file example in the README's host install.</summary>
    private static List<(string Name, string Value)> ReadmeEnvFile()
    {
        var section = Readme.Section("## Host install (systemd, no Kubernetes)");
        var heredoc = Regex.Match(section, @"<<'EOF'\n(.*?)\nEOF", RegexOptions.Singleline);
        Assert.True(heredoc.Success, "no env file example in the README's host install");
        return heredoc.Groups[1].Value.Split('\n').Select(l => l.Split('=', 2)).Select(p => (p[0], p[1])).ToList();
    }

    [GeneratedRegex(@"^\s*#\s*([A-Z][A-Z0-9_]+):\s", RegexOptions.Multiline)]
    private static partial Regex CommentedVariable();
}

/// <summary>daemonset/akto-collector.service read as systemd reads it: Key=value lines.</summary>
public static class SystemdUnit
{
    public static string PathOnDisk => Path.Combine(Repo.Root, "daemonset", "akto-collector.service");

    public static IEnumerable<string> Values(string key) =>
        File.ReadAllLines(PathOnDisk).Select(l => l.Trim()).Where(l => !l.StartsWith('#') && l.StartsWith(key + "="))
            .Select(l => l[(key.Length + 1)..]);

    public static IEnumerable<(string Name, string Value)> Environment() =>
        Values("Environment").SelectMany(v => v.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            .Select(a => a.Trim('"').Split('=', 2)).Select(p => (p[0], p[1]));
}
