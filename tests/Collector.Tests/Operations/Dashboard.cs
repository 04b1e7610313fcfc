using System.Text.Json;
using System.Text.RegularExpressions;
using Collector.Tests.Support;

namespace Collector.Tests.Operations;

/// <summary>daemonset/grafana-dashboard.json: the PromQL of every panel target and the metric
/// names used anywhere (panels and template variables).</summary>
public sealed partial class Dashboard
{
    public static string PathOnDisk => Path.Combine(Repo.Root, "daemonset", "grafana-dashboard.json");

    public JsonElement Root { get; }
    /// <summary>Panel targets' expr (PromQL with Grafana variables).</summary>
    public List<string> Queries { get; } = new();
    /// <summary>Template variable queries (Grafana functions such as label_values).</summary>
    public List<string> VariableQueries { get; } = new();
    /// <summary>Metric names as Prometheus stores them (histograms as name_bucket).</summary>
    public SortedSet<string> Metrics { get; } = new(StringComparer.Ordinal);
    public List<JsonElement> Panels { get; } = new();

    private Dashboard(JsonElement root)
    {
        Root = root;
        if (root.TryGetProperty("panels", out var panels)) Walk(panels);
        if (root.TryGetProperty("templating", out var t) && t.TryGetProperty("list", out var list))
            foreach (var v in list.EnumerateArray())
            {
                if (v.GetProperty("type").GetString() != "query") continue;
                var q = v.GetProperty("query");
                VariableQueries.Add(q.ValueKind == JsonValueKind.String ? q.GetString()! : q.GetProperty("query").GetString()!);
            }
        foreach (var q in Queries.Concat(VariableQueries))
            foreach (Match m in MetricName().Matches(q))
                Metrics.Add(m.Value);
    }

    public static Dashboard Load() =>
        new(JsonDocument.Parse(File.ReadAllText(PathOnDisk)).RootElement.Clone());

    private void Walk(JsonElement panels)
    {
        foreach (var p in panels.EnumerateArray())
        {
            Panels.Add(p);
            if (p.TryGetProperty("targets", out var targets))
                foreach (var t in targets.EnumerateArray())
                    if (t.TryGetProperty("expr", out var e)) Queries.Add(e.GetString()!);
            if (p.TryGetProperty("panels", out var inner)) Walk(inner);
        }
    }

    [GeneratedRegex(@"\bcollector_[a-z0-9_]+\b")]
    private static partial Regex MetricName();
}
