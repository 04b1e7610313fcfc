using System.Net;
using System.Text.Json;
using System.Text.RegularExpressions;
using Collector.Connections;
using Collector.Configuration;

namespace Collector.Filtering;

/// <summary>One AKTO_MODULE_DISCOVERY_CONFIG rule: a request header (case-insensitive name) whose
/// value must match an unanchored, case-sensitive regex; when the header is absent the rule rejects
/// only if ifAbsent is "reject" (any case).</summary>
public sealed record DiscoveryRule(string Header, bool RejectIfAbsent, Regex Value);

public sealed class DiscoveryRulesException(string message) : Exception(message);

public static class DiscoveryRules
{
    /// <summary>Parses the JSON array; a bad document or regex names the rule.</summary>
    public static IReadOnlyList<DiscoveryRule> Parse(string? json)
    {
        if (string.IsNullOrWhiteSpace(json)) return [];
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(json);
        }
        catch (JsonException e)
        {
            throw new DiscoveryRulesException($"not valid JSON: {e.Message}");
        }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Array)
                throw new DiscoveryRulesException("must be a JSON array of rules");
            var rules = new List<DiscoveryRule>();
            var i = 0;
            foreach (var r in doc.RootElement.EnumerateArray())
            {
                if (r.ValueKind != JsonValueKind.Object ||
                    !r.TryGetProperty("key", out var key) || key.ValueKind != JsonValueKind.Object ||
                    !key.TryGetProperty("eq", out var eq) || eq.ValueKind != JsonValueKind.String || eq.GetString()!.Length == 0)
                    throw new DiscoveryRulesException($"rule {i}: needs \"key\": {{\"eq\": \"<header name>\"}}");
                var ifAbsent = key.TryGetProperty("ifAbsent", out var ia) && ia.ValueKind == JsonValueKind.String
                    ? ia.GetString()! : "";
                if (!r.TryGetProperty("value", out var value) || value.ValueKind != JsonValueKind.Object ||
                    !value.TryGetProperty("regex", out var rx) || rx.ValueKind != JsonValueKind.String)
                    throw new DiscoveryRulesException($"rule {i} ({eq.GetString()}): needs \"value\": {{\"regex\": \"...\"}}");
                Regex regex;
                try
                {
                    regex = new Regex(rx.GetString()!, RegexOptions.CultureInvariant, TimeSpan.FromMilliseconds(100));
                }
                catch (ArgumentException e)
                {
                    throw new DiscoveryRulesException($"rule {i} ({eq.GetString()}): invalid regex: {e.Message}");
                }
                rules.Add(new DiscoveryRule(eq.GetString()!, ifAbsent.Equals("reject", StringComparison.OrdinalIgnoreCase), regex));
                i++;
            }
            return rules;
        }
    }

    /// <summary>AND across rules.</summary>
    public static bool Keep(IReadOnlyList<DiscoveryRule> rules, HttpExchange exchange)
    {
        foreach (var rule in rules)
        {
            var value = exchange.Request.Header(rule.Header);
            if (value is null)
            {
                if (rule.RejectIfAbsent) return false;
                continue;
            }
            try
            {
                if (!rule.Value.IsMatch(value)) return false;
            }
            catch (RegexMatchTimeoutException)
            {
                return false; // a pathological value cannot stall the output stage
            }
        }
        return true;
    }
}

/// <summary>The header-value filter of the processor's settings (accounts_settings.filterHeaderValueMap):
/// keep a request when any listed header has the listed value (OR). Empty: keep all.</summary>
public static class HeaderValueFilter
{
    public static IReadOnlyDictionary<string, string> Parse(string? json)
    {
        if (string.IsNullOrWhiteSpace(json)) return new Dictionary<string, string>();
        try
        {
            var map = JsonSerializer.Deserialize<Dictionary<string, string>>(json)
                      ?? throw new SettingsException("AKTO_HEADER_VALUE_FILTER", "must be a JSON object of header → value");
            var byName = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
            foreach (var (name, value) in map)
                if (!byName.TryAdd(name, value))
                    throw new SettingsException("AKTO_HEADER_VALUE_FILTER", $"header '{name}' is listed twice (names are compared in any case)");
            return byName;
        }
        catch (JsonException e)
        {
            throw new SettingsException("AKTO_HEADER_VALUE_FILTER", $"must be a JSON object of header → value strings: {e.Message}");
        }
    }

    public static bool Keep(IReadOnlyDictionary<string, string> map, HttpExchange exchange)
    {
        if (map.Count == 0) return true;
        // a repeated header matches when any of its occurrences, or all of them joined, has the value
        foreach (var (name, value) in map)
        {
            foreach (var (k, v) in exchange.Request.Headers)
                if (k.Equals(name, StringComparison.OrdinalIgnoreCase) && v.Trim() == value) return true;
            if (exchange.Request.Header(name) == value) return true;
        }
        return false;
    }
}

/// <summary>All filters in the order they apply. Returns the reason an exchange is dropped, or null.</summary>
public sealed class ExchangeFilter
{
    private volatile IReadOnlyList<DiscoveryRule> _rules;
    private readonly ISettingsSource _processorSettings;
    private readonly Settings _settings;

    public ExchangeFilter(Settings settings, IReadOnlyList<DiscoveryRule> rules, IReadOnlyDictionary<string, string> headerValues)
        : this(settings, rules, new EnvironmentSettingsSource(headerValues))
    {
    }

    /// <summary>processorSettings: the seam where a MongoDB source of the processor's settings plugs in.</summary>
    public ExchangeFilter(Settings settings, IReadOnlyList<DiscoveryRule> rules, ISettingsSource processorSettings)
    {
        _settings = settings;
        _rules = rules;
        _processorSettings = processorSettings;
    }

    /// <summary>Rules from a reloaded file replace the old ones atomically.</summary>
    public void ReplaceRules(IReadOnlyList<DiscoveryRule> rules) => _rules = rules;

    public IReadOnlyList<DiscoveryRule> Rules => _rules;

    public string? DropReason(HttpExchange exchange)
    {
        if (_settings.DisableEgress && exchange.Direction == 2) return "egress_disabled";
        var host = exchange.Request.Header("host");
        if (_settings.IgnoreIpTraffic && IsIpOrEmpty(host)) return "ip_host";
        if (_settings.IgnoreCloudMetadataCalls && IsCloudMetadata(exchange, host)) return "cloud_metadata";
        if (!DiscoveryRules.Keep(_rules, exchange)) return "discovery_rules";
        if (!HeaderValueFilter.Keep(_processorSettings.HeaderValueFilter, exchange)) return "header_value_filter";
        return null;
    }

    /// <summary>Empty, or an IP literal with or without a port: dotted-quad IPv4, [IPv6], or a
    /// bare IPv6. Only the literal forms count (as Go's net.ParseIP in Akto's collector): "1" or
    /// "1.2.3", which .NET's parser would also take for IPv4, are names here.</summary>
    internal static bool IsIpOrEmpty(string? host)
    {
        if (string.IsNullOrWhiteSpace(host)) return true;
        var h = host.Trim();
        if (h.StartsWith('['))
        {
            var end = h.IndexOf(']');
            return end > 0 && IPAddress.TryParse(h[1..end], out var a6) && a6.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6;
        }
        var colon = h.LastIndexOf(':');
        if (colon > 0 && h.IndexOf(':') == colon) h = h[..colon]; // host:port (not a bare IPv6)
        if (h.Contains(':'))
            return IPAddress.TryParse(h, out var a) && a.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6;
        var parts = h.Split('.');
        return parts.Length == 4 && parts.All(p => p.Length is > 0 and <= 3 && p.All(char.IsAsciiDigit) && int.Parse(p) <= 255);
    }

    private static bool IsCloudMetadata(HttpExchange exchange, string? host)
    {
        const string metadata = "169.254.169.254";
        if (host is not null && (host == metadata || host.StartsWith(metadata + ":"))) return true;
        var info = exchange.Info;
        if (info is null) return false;
        var server = exchange.Direction == 1 ? info.LocalAddress : info.RemoteAddress;
        return server.ToString() == metadata;
    }
}
