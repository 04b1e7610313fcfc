using System.Collections.Concurrent;
using System.Diagnostics;

namespace Collector.Metrics;

/// <summary>The sensitive-data series: findings by category, location and endpoint template, the
/// exchanges classified by outcome, and the time classification took. The findings' series are
/// capped: past the cap a new (category, location, endpoint) counts under endpoint "_overflow",
/// so that an API with unbounded paths cannot grow /metrics without bound.</summary>
public sealed class SensitiveMetrics(int maxSeries)
{
    public const string OverflowEndpoint = "_overflow";
    public static readonly string[] Results = ["clean", "reported", "masked", "dropped"];

    private readonly ConcurrentDictionary<(string Category, string Location, string Endpoint), Counter> _findings = new();
    // ConcurrentDictionary.Count takes every lock: past the cap it would be asked per lookup
    private int _findingSeries;
    public int MaxSeries { get; } = maxSeries;
    public LabeledCounter Exchanges { get; } = new("result", 8);
    public Counter ClassifyTicks { get; } = new();
    public Counter PolicyReloads { get; } = new();
    public Counter PolicyReloadFailures { get; } = new();
    /// <summary>Categories on in the policy in effect (0: off).</summary>
    public int CategoriesOn;

    public Counter Findings(string category, string location, string endpoint)
    {
        var key = (category, location, endpoint);
        if (_findings.TryGetValue(key, out var c)) return c;
        if (Volatile.Read(ref _findingSeries) >= MaxSeries) key = (category, location, OverflowEndpoint);
        return CappedSeries.GetOrAdd(_findings, key, ref _findingSeries);
    }

    public IEnumerable<(IReadOnlyList<(string Name, string Value)> Labels, double Value)> FindingSeries() =>
        _findings.OrderBy(kv => kv.Key.Category, StringComparer.Ordinal).ThenBy(kv => kv.Key.Endpoint, StringComparer.Ordinal)
            .ThenBy(kv => kv.Key.Location, StringComparer.Ordinal)
            .Select(kv => ((IReadOnlyList<(string, string)>)[("category", kv.Key.Category), ("location", kv.Key.Location), ("endpoint", kv.Key.Endpoint)],
                (double)kv.Value.Value));

    public double ClassifySeconds => ClassifyTicks.Value / (double)Stopwatch.Frequency;

    public PrometheusWriter Render(PrometheusWriter w) => w
        .Family("collector_sensitive_findings_total", "Sensitive values found, by category, location (request|response . header|query|body) and endpoint template (host and path, numeric and UUID segments folded; _overflow past SENSITIVE_METRICS_MAX_SERIES).", "counter", FindingSeries())
        .Labeled("collector_sensitive_exchanges_total", "Exchanges classified by the sensitive-data policy, by outcome (clean, reported, masked, dropped: not sent).", "counter", Exchanges)
        .Counter("collector_sensitive_classify_seconds_total", "Time spent classifying and masking, on the event thread (the clock is read for a random one in about 8.5 exchanges, each counted for itself and the untimed ones after it).", ClassifySeconds)
        .Gauge("collector_sensitive_categories", "Categories on in the sensitive-data policy in effect (0: SENSITIVE_DATA_POLICY=off).", Volatile.Read(ref CategoriesOn))
        .Counter("collector_sensitive_policy_reloads_total", "Sensitive-data policy files loaded after start.", PolicyReloads.Value)
        .Counter("collector_sensitive_policy_reload_failures_total", "Sensitive-data policy files refused (the policy in effect stays).", PolicyReloadFailures.Value);
}
