using Collector.Configuration;

namespace Collector.Filtering;

/// <summary>Where the data processor's own settings come from: the environment
/// (<see cref="EnvironmentSettingsSource"/>) or, as in Akto's deployment, its MongoDB
/// (<see cref="MongoSettingsSource"/>, AKTO_MONGO_CONN). <see cref="ExchangeFilter"/> reads the
/// value for every exchange, so a source replaces it whole (one reference) and a new value applies
/// from the next exchange. (The processor's per-host traffic counts, which Akto's collector writes to
/// MongoDB's traffic_metrics, are on /metrics as collector_host_requests_total instead.)</summary>
public interface ISettingsSource
{
    /// <summary>Header name (any case) → value: keep a request when any listed header has exactly
    /// the listed value (OR across entries). Empty: keep every request.</summary>
    IReadOnlyDictionary<string, string> HeaderValueFilter { get; }

    /// <summary>For logs: where the values came from.</summary>
    string Description { get; }
}

/// <summary>The processor's settings from environment variables: AKTO_HEADER_VALUE_FILTER, a JSON
/// object with the semantics of filterHeaderValueMap.</summary>
public sealed class EnvironmentSettingsSource(IReadOnlyDictionary<string, string> headerValueFilter) : ISettingsSource
{
    public static EnvironmentSettingsSource From(Settings settings) =>
        new(Filtering.HeaderValueFilter.Parse(settings.HeaderValueFilter));

    public IReadOnlyDictionary<string, string> HeaderValueFilter { get; } = headerValueFilter;

    public string Description => HeaderValueFilter.Count == 0
        ? "none (AKTO_HEADER_VALUE_FILTER unset): every request kept"
        : $"AKTO_HEADER_VALUE_FILTER, {HeaderValueFilter.Count} entries ({string.Join(", ", HeaderValueFilter.Keys)})";
}
