using System.Net;
using Collector.Configuration;
using Collector.Connections;
using Collector.Events;
using Collector.Filtering;
using Collector.Http;

namespace Collector.Tests.Filtering;

/// <summary>Each filter's exact semantics on exchanges built here: AKTO_MODULE_DISCOVERY_CONFIG,
/// AKTO_IGNORE_IP_TRAFFIC, AKTO_IGNORE_CLOUD_METADATA_CALLS, TRAFFIC_DISABLE_EGRESS and the
/// header-value filter (the processor's filterHeaderValueMap).</summary>
public sealed class ExchangeFilterTests
{
    private static HttpExchange Exchange(string? host = "api.example.com", int direction = 1, IPAddress? server = null,
        params (string Name, string Value)[] headers)
    {
        var request = new HttpMessage { IsRequest = true, Method = "GET", Target = "/items?id=1", Version = "HTTP/1.1" };
        if (host is not null) request.Headers.Add(new("Host", host));
        foreach (var (name, value) in headers) request.Headers.Add(new(name, value));
        var response = new HttpMessage { StatusCode = 200, Reason = "OK", Version = "HTTP/1.1" };
        var serverAddress = server ?? IPAddress.Parse("10.0.0.9");
        var peer = IPAddress.Parse("10.0.0.7");
        var info = direction == 1
            ? new ConnectionInfo(serverAddress, 8080, peer, 51334, ConnectionOrigin.Accept, "server")
            : new ConnectionInfo(peer, 51334, serverAddress, 8080, ConnectionOrigin.Connect, "client");
        return new HttpExchange
        {
            Connection = new ConnectionId(4121, 17, 0), Info = info, Direction = direction, Source = EventSource.Syscall,
            Request = request, Response = response,
        };
    }

    private static ExchangeFilter Filter(Settings? settings = null, string? rules = null, string? headerValues = null) =>
        new(settings ?? new Settings(), DiscoveryRules.Parse(rules), HeaderValueFilter.Parse(headerValues));

    private static string Rule(string header, string regex, string? ifAbsent = null) =>
        "{\"key\":{\"eq\":\"" + header + "\"" + (ifAbsent is null ? "" : ",\"ifAbsent\":\"" + ifAbsent + "\"") +
        "},\"value\":{\"regex\":\"" + regex + "\"}}";

    // ---- AKTO_MODULE_DISCOVERY_CONFIG ----

    [Theory]
    [InlineData("X-Forwarded-Client-Cert", "x-forwarded-client-cert")]
    [InlineData("x-forwarded-client-cert", "X-FORWARDED-CLIENT-CERT")]
    [InlineData("HOST", "Host")]
    public void Discovery_rule_header_names_match_in_any_case(string ruleName, string sentName)
    {
        var filter = Filter(rules: $"[{Rule(ruleName, "bookinfo", "reject")}]");
        using var x = sentName.Equals("host", StringComparison.OrdinalIgnoreCase)
            ? Exchange(host: "reviews.bookinfo.svc")
            : Exchange(headers: (sentName, "By=spiffe://cluster.local/ns/bookinfo/sa/reviews"));
        Assert.Null(filter.DropReason(x));
    }

    [Fact]
    public void Discovery_rules_see_the_host_header()
    {
        var filter = Filter(rules: $"[{Rule("host", "bookinfo")}]");
        using var kept = Exchange(host: "reviews.bookinfo.svc:9080");
        using var dropped = Exchange(host: "payments.internal");
        Assert.Null(filter.DropReason(kept));
        Assert.Equal("discovery_rules", filter.DropReason(dropped));
    }

    [Theory]
    [InlineData("reject", true)]
    [InlineData("REJECT", true)]
    [InlineData("Reject", true)]
    [InlineData("accept", false)]
    [InlineData("", false)]
    [InlineData("rejected", false)]
    [InlineData(null, false)]
    public void An_absent_header_is_rejected_only_when_ifAbsent_is_reject_in_any_case(string? ifAbsent, bool rejected)
    {
        var filter = Filter(rules: $"[{Rule("x-tenant", "acme", ifAbsent)}]");
        using var absent = Exchange();
        Assert.Equal(rejected ? "discovery_rules" : null, filter.DropReason(absent));
        // present, the regex decides whatever ifAbsent says
        using var matching = Exchange(headers: ("x-tenant", "acme"));
        using var other = Exchange(headers: ("x-tenant", "globex"));
        Assert.Null(filter.DropReason(matching));
        Assert.Equal("discovery_rules", filter.DropReason(other));
    }

    [Theory]
    [InlineData("book", "xbookinfo", true)]          // anywhere in the value
    [InlineData("^book", "xbookinfo", false)]        // anchors are the rule's own
    [InlineData("info$", "bookinfo", true)]
    [InlineData("bookinfo", "BOOKINFO", false)]      // case-sensitive
    [InlineData("(?i)bookinfo", "BOOKINFO", true)]   // unless the regex says otherwise
    [InlineData("b.*k", "a book", true)]
    public void The_value_regex_is_unanchored_and_case_sensitive(string regex, string value, bool kept)
    {
        var filter = Filter(rules: $"[{Rule("x-app", regex, "reject")}]");
        using var x = Exchange(headers: ("X-App", value));
        Assert.Equal(kept ? null : "discovery_rules", filter.DropReason(x));
    }

    [Fact]
    public void A_request_is_kept_only_when_every_rule_passes()
    {
        var filter = Filter(rules: $"[{Rule("x-tenant", "^acme", "reject")},{Rule("host", "\\\\.svc$")}]");
        using var both = Exchange(host: "orders.svc", headers: ("x-tenant", "acme-eu"));
        using var hostFails = Exchange(host: "orders.example.com", headers: ("x-tenant", "acme-eu"));
        using var tenantFails = Exchange(host: "orders.svc", headers: ("x-tenant", "globex"));
        using var tenantAbsent = Exchange(host: "orders.svc");
        Assert.Null(filter.DropReason(both));
        Assert.Equal("discovery_rules", filter.DropReason(hostFails));
        Assert.Equal("discovery_rules", filter.DropReason(tenantFails));
        Assert.Equal("discovery_rules", filter.DropReason(tenantAbsent));
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("   ")]
    [InlineData("[]")]
    public void Unset_or_empty_discovery_config_keeps_everything(string? rules)
    {
        var filter = Filter(rules: rules);
        using var noHost = Exchange(host: null);
        using var any = Exchange(headers: ("x-tenant", "whatever"));
        Assert.Null(filter.DropReason(noHost));
        Assert.Null(filter.DropReason(any));
        Assert.Empty(filter.Rules);
    }

    [Fact]
    public void An_invalid_regex_is_refused_naming_the_rule()
    {
        var e = Assert.Throws<DiscoveryRulesException>(() =>
            DiscoveryRules.Parse($"[{Rule("host", "ok")},{Rule("x-forwarded-client-cert", "[unclosed")}]"));
        Assert.StartsWith("rule 1 (x-forwarded-client-cert): invalid regex", e.Message);
        var json = Assert.Throws<DiscoveryRulesException>(() => DiscoveryRules.Parse("[{\"key\":{\"eq\":\"host\"}"));
        Assert.StartsWith("not valid JSON", json.Message);
    }

    // ---- AKTO_IGNORE_IP_TRAFFIC ----

    [Theory]
    [InlineData(null, true)]
    [InlineData("", true)]
    [InlineData("10.0.0.1", true)]
    [InlineData("10.0.0.1:8080", true)]
    [InlineData("[2001:db8::1]", true)]
    [InlineData("[2001:db8::1]:443", true)]
    [InlineData("[::1]:8080", true)]
    [InlineData("2001:db8::1", true)]
    [InlineData("api.example.com", false)]
    [InlineData("api.example.com:8080", false)]
    [InlineData("localhost", false)]
    [InlineData("1", false)]              // .NET would read it as 0.0.0.1; as a Host it is a name
    [InlineData("10.0.0", false)]
    [InlineData("999.0.0.1", false)]
    [InlineData("[not-an-ip]:80", false)]
    public void Ip_traffic_is_requests_whose_host_is_empty_or_an_ip_literal(string? host, bool dropped)
    {
        using var x = Exchange(host: host);
        Assert.Equal(dropped ? "ip_host" : null, Filter(new Settings { IgnoreIpTraffic = true }).DropReason(x));
        Assert.Null(Filter().DropReason(x)); // off by default
    }

    // ---- AKTO_IGNORE_CLOUD_METADATA_CALLS ----

    [Theory]
    [InlineData("169.254.169.254", 1, null, true)]
    [InlineData("169.254.169.254:80", 2, null, true)]
    [InlineData("metadata.internal", 2, "169.254.169.254", true)] // sent to the metadata address under another name
    [InlineData("169.254.169.2540", 1, null, false)]
    [InlineData("api.example.com", 2, null, false)]
    public void Cloud_metadata_calls_are_dropped_by_host_or_address(string host, int direction, string? server, bool dropped)
    {
        using var x = Exchange(host: host, direction: direction, server: server is null ? null : IPAddress.Parse(server));
        Assert.Equal(dropped ? "cloud_metadata" : null, Filter(new Settings { IgnoreCloudMetadataCalls = true }).DropReason(x));
        Assert.Null(Filter().DropReason(x));
    }

    // ---- TRAFFIC_DISABLE_EGRESS ----

    [Fact]
    public void Disabling_egress_drops_only_what_the_traced_process_sent_as_a_client()
    {
        var filter = Filter(new Settings { DisableEgress = true });
        using var inbound = Exchange(direction: 1);
        using var outbound = Exchange(direction: 2);
        Assert.Null(filter.DropReason(inbound));
        Assert.Equal("egress_disabled", filter.DropReason(outbound));
        Assert.Null(Filter().DropReason(outbound));
    }

    // ---- AKTO_HEADER_VALUE_FILTER (filterHeaderValueMap) ----

    [Fact]
    public void The_header_value_filter_keeps_a_request_when_any_listed_header_has_its_value()
    {
        var filter = Filter(headerValues: "{\"x-env\":\"prod\",\"X-Team\":\"payments\"}");
        using var env = Exchange(headers: ("X-Env", "prod"));
        using var team = Exchange(headers: ("x-team", "payments"));
        using var both = Exchange(headers: [("x-env", "prod"), ("x-team", "payments")]);
        using var neither = Exchange(headers: [("x-env", "staging"), ("x-team", "search")]);
        using var none = Exchange();
        using var otherCase = Exchange(headers: ("x-env", "PROD")); // values compare exactly
        using var substring = Exchange(headers: ("x-env", "prod-eu"));
        using var repeated = Exchange(headers: [("x-env", "staging"), ("x-env", "prod")]);
        Assert.Null(filter.DropReason(env));
        Assert.Null(filter.DropReason(team));
        Assert.Null(filter.DropReason(both));
        Assert.Null(filter.DropReason(repeated));
        Assert.Equal("header_value_filter", filter.DropReason(neither));
        Assert.Equal("header_value_filter", filter.DropReason(none));
        Assert.Equal("header_value_filter", filter.DropReason(otherCase));
        Assert.Equal("header_value_filter", filter.DropReason(substring));
    }

    [Theory]
    [InlineData(null)]
    [InlineData("{}")]
    public void An_empty_header_value_filter_keeps_everything(string? json)
    {
        using var x = Exchange();
        Assert.Null(Filter(headerValues: json).DropReason(x));
    }

    [Fact]
    public void The_environment_settings_source_carries_the_header_value_filter()
    {
        var source = EnvironmentSettingsSource.From(new Settings { HeaderValueFilter = "{\"x-env\":\"prod\"}" });
        Assert.Equal("prod", source.HeaderValueFilter["X-ENV"]);
        var filter = new ExchangeFilter(new Settings(), [], source);
        using var prod = Exchange(headers: ("x-env", "prod"));
        using var dev = Exchange(headers: ("x-env", "dev"));
        Assert.Null(filter.DropReason(prod));
        Assert.Equal("header_value_filter", filter.DropReason(dev));
    }

    [Fact]
    public void Filters_apply_in_order_and_report_the_first_reason()
    {
        var filter = Filter(new Settings { DisableEgress = true, IgnoreIpTraffic = true, IgnoreCloudMetadataCalls = true },
            $"[{Rule("x-tenant", "acme", "reject")}]", "{\"x-env\":\"prod\"}");
        using var egress = Exchange(host: "10.0.0.1", direction: 2);
        using var ip = Exchange(host: "169.254.169.254");
        using var rules = Exchange(host: "api.example.com");
        using var values = Exchange(host: "api.example.com", headers: ("x-tenant", "acme"));
        using var kept = Exchange(host: "api.example.com", headers: [("x-tenant", "acme"), ("x-env", "prod")]);
        Assert.Equal("egress_disabled", filter.DropReason(egress));
        Assert.Equal("ip_host", filter.DropReason(ip));
        Assert.Equal("discovery_rules", filter.DropReason(rules));
        Assert.Equal("header_value_filter", filter.DropReason(values));
        Assert.Null(filter.DropReason(kept));
    }
}
