using Collector.Configuration;

namespace Collector.Filtering;

/// <summary>Where the data processor's own settings come from. In Akto's deployment they live in
/// MongoDB (accounts_settings.filterHeaderValueMap, reached with AKTO_MONGO_CONN). MongoDB is not
/// supported yet: no driver can be restored on the build machines and no server can be run in
/// tests, so AKTO_MONGO_CONN is refused at start-up and the one source is the environment.
///
/// A MongoDB source would implement this interface, poll the account's settings document and
/// replace <see cref="HeaderValueFilter"/> atomically; <see cref="ExchangeFilter"/> reads it for
/// every exchange, so a new value applies from the next one. (The processor's per-host traffic
/// counts, traffic_metrics, are already kept on /metrics as collector_host_requests_total; a
/// MongoDB source would write them from there.)</summary>
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

    public string Description => "environment (AKTO_HEADER_VALUE_FILTER)";
}
