using System.Text;
using System.Text.Json;
using Collector.Metrics;
using Collector.Sensitive;
using static Collector.Tests.Sensitive.Exchanges;

namespace Collector.Tests.Sensitive;

/// <summary>The classify-and-mask step over whole exchanges: where values are looked for, what
/// the message says about them, what masking changes and what it leaves alone.</summary>
public class ClassifierTests
{
    private const string Jwt =
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";

    private static readonly string Customer =
        $"{{\"customer\":{{\"email\":\"alice@example.com\",\"ssn\":\"536904399\",\"card\":{{\"number\":\"4111 1111 1111 1111\",\"exp\":\"12/29\"}}}},\"token\":\"{Jwt}\",\"id\":1764000000,\"version\":\"1.2.3.4\"}}";

    [Fact]
    public void The_default_policy_reports_every_category_where_it_is_and_changes_nothing()
    {
        using var x = Make("/api/v1/customers/42", responseBody: Customer);
        var metrics = new SensitiveMetrics(100);
        var (m, outcome, c) = Run(x, SensitivePolicy.Default, metrics);
        Assert.Equal(ClassifyOutcome.Reported, outcome);
        Assert.Equal(Customer, m!.Value.GetProperty("responsePayload").GetString());
        var note = Headers(m.Value, "responseHeaders")["x-collector-sensitive"];
        Assert.Equal("EMAIL@response.body.customer.email, SSN@response.body.customer.ssn, CREDIT_CARD@response.body.customer.card.number, JWT@response.body.token", note);
        Assert.False(Headers(m.Value, "requestHeaders").ContainsKey("x-collector-sensitive"));
        Assert.Equal(1, metrics.Findings("CREDIT_CARD", "response.body", "api.example.com/api/v1/customers/INTEGER").Value);
        Assert.Equal(1, metrics.Findings("SSN", "response.body", "api.example.com/api/v1/customers/INTEGER").Value);
        Assert.Equal(1, metrics.Exchanges["reported"].Value);
        Assert.Equal(4, c.Findings.Count); // the timestamp id and the version are not findings
    }

    [Fact]
    public void Every_finding_is_counted_on_its_series_across_exchanges_and_endpoints()
    {
        // one classifier (as on an event thread): findings of one series in one exchange, then
        // the next exchange on another endpoint, then the first endpoint again, then a reload
        var metrics = new SensitiveMetrics(100);
        var classifier = new SensitiveClassifier(metrics, Key);
        var records = "[" + string.Join(",", Enumerable.Range(0, 7).Select(i => $"{{\"card\":\"4111111111111111\",\"email\":\"u{i}@example.com\"}}")) + "]";
        // the last exchange under a reloaded policy (another object, the same categories reported)
        var reloaded = Policy("categories:\n  CREDIT_CARD: {action: report}\n  EMAIL: {action: report}\n");
        foreach (var (target, body, policy) in new[] { ("/api/v1/customers/1", records, SensitivePolicy.Default),
                     ("/api/v1/orders/2", "{\"card\":\"4111111111111111\"}", SensitivePolicy.Default), ("/api/v1/customers/3", records, SensitivePolicy.Default),
                     ("/api/v1/customers/4", records, reloaded) })
        {
            using var x = Make(target, responseBody: body, requestHeaders: [("X-Contact", "ops@example.com")]);
            var parts = Prepared(x);
            classifier.Classify(x, parts, policy, 1 << 20);
            parts.Release();
        }
        Assert.Equal(21, metrics.Findings("CREDIT_CARD", "response.body", "api.example.com/api/v1/customers/INTEGER").Value);
        Assert.Equal(21, metrics.Findings("EMAIL", "response.body", "api.example.com/api/v1/customers/INTEGER").Value);
        Assert.Equal(3, metrics.Findings("EMAIL", "request.header", "api.example.com/api/v1/customers/INTEGER").Value);
        Assert.Equal(1, metrics.Findings("CREDIT_CARD", "response.body", "api.example.com/api/v1/orders/INTEGER").Value);
        Assert.Equal(1, metrics.Findings("EMAIL", "request.header", "api.example.com/api/v1/orders/INTEGER").Value);
    }

    [Fact]
    public void An_exchange_that_breaks_off_counts_what_it_found_and_leaves_nothing_to_the_next()
    {
        var metrics = new SensitiveMetrics(100);
        var classifier = new SensitiveClassifier(metrics, Key);
        var records = "[" + string.Join(",", Enumerable.Range(0, 3).Select(_ => "{\"card\":\"4111111111111111\"}")) + "]";
        using (var broken = Make("/api/v1/customers/1", responseBody: records))
        {
            var parts = Prepared(broken);
            // the response is read first; the request side then fails (a defect stood in for by a missing message)
            parts.Request.Message = null!;
            Assert.Throws<NullReferenceException>(() => classifier.Classify(broken, parts, SensitivePolicy.Default, 1 << 20));
        }
        Assert.Equal(3, metrics.Findings("CREDIT_CARD", "response.body", "api.example.com/api/v1/customers/INTEGER").Value);
        // the next exchange, under a reloaded policy whose counters are laid out anew
        using var next = Make("/api/v1/orders/2", responseBody: records);
        var outcome = classifier.Classify(next, Prepared(next), Policy("categories:\n  CREDIT_CARD: {action: report}\n"), 1 << 20);
        Assert.Equal(ClassifyOutcome.Reported, outcome);
        Assert.Equal(3, metrics.Findings("CREDIT_CARD", "response.body", "api.example.com/api/v1/orders/INTEGER").Value);
        Assert.Equal(3, metrics.Findings("CREDIT_CARD", "response.body", "api.example.com/api/v1/customers/INTEGER").Value);
    }

    private static Collector.Output.MessageParts Prepared(Collector.Connections.HttpExchange x)
    {
        var parts = new Collector.Output.MessageParts();
        Collector.Output.AktoMessage.Decode(x, 1 << 20);
        Collector.Output.AktoMessage.Prepare(parts, x, Identity);
        return parts;
    }

    [Fact]
    public void Masking_replaces_exactly_the_matched_spans_with_the_keyed_hash()
    {
        using var x = Make("/api/v1/customers/42", responseBody: Customer);
        var (m, outcome, _) = Run(x, Policy("categories:\n  CREDIT_CARD: {action: mask}\n  SSN: {action: mask}\n  EMAIL: {action: mask}\n  JWT: {action: mask}\n"));
        Assert.Equal(ClassifyOutcome.Masked, outcome);
        var payload = m!.Value.GetProperty("responsePayload").GetString()!;
        var expected = Customer.Replace("alice@example.com", Hash("EMAIL", "alice@example.com"))
            .Replace("536904399", Hash("SSN", "536904399"))
            .Replace("4111 1111 1111 1111", Hash("CREDIT_CARD", "4111 1111 1111 1111"))
            .Replace(Jwt, Hash("JWT", Jwt));
        Assert.Equal(expected, payload);
        using var doc = JsonDocument.Parse(payload); // still JSON, same shape
        Assert.Equal("12/29", doc.RootElement.GetProperty("customer").GetProperty("card").GetProperty("exp").GetString());
        // equal values give equal masks (joinable), and the note says what was there
        using var y = Make("/other", responseBody: "{\"email\":\"alice@example.com\"}");
        var (m2, _, _) = Run(y, Policy("categories:\n  EMAIL: {action: mask}\n"));
        Assert.Contains(Hash("EMAIL", "alice@example.com"), m2!.Value.GetProperty("responsePayload").GetString());
        Assert.Equal("EMAIL@response.body.email", Headers(m2.Value, "responseHeaders")["x-collector-sensitive"]);
    }

    private static string Hash(string category, string value)
    {
        var mac = System.Security.Cryptography.HMACSHA256.HashData(Key, System.Text.Encoding.UTF8.GetBytes(value));
        return $"[{category}:{Convert.ToHexStringLower(mac, 0, 8)}]";
    }

    [Fact]
    public void A_card_as_a_json_number_is_masked_with_digits_so_the_document_keeps_its_types()
    {
        using var x = Make("/pay", requestBody: "{\"cardNumber\":4111111111111111,\"amount\":12}");
        var (m, _, _) = Run(x, Policy("categories:\n  CREDIT_CARD: {action: mask}\n"));
        using var doc = JsonDocument.Parse(m!.Value.GetProperty("requestPayload").GetString()!);
        var masked = doc.RootElement.GetProperty("cardNumber");
        Assert.Equal(JsonValueKind.Number, masked.ValueKind);
        Assert.Equal(16, masked.GetRawText().Length);
        Assert.NotEqual("4111111111111111", masked.GetRawText());
        Assert.Equal(12, doc.RootElement.GetProperty("amount").GetInt32());
    }

    [Fact]
    public void Fixed_masks_need_no_key()
    {
        using var x = Make("/pay", requestBody: "{\"email\":\"bob@example.org\"}");
        var (m, _, _) = Run(x, Policy("mask: {with: fixed, text: '***'}\ncategories:\n  EMAIL: {action: mask}\n"), key: null);
        Assert.Equal("{\"email\":\"***\"}", m!.Value.GetProperty("requestPayload").GetString());
    }

    [Fact]
    public void Drop_sends_nothing()
    {
        using var x = Make("/hr/employees/7", responseBody: "{\"ssn\":\"536-90-4399\"}");
        var metrics = new SensitiveMetrics(100);
        var (m, outcome, _) = Run(x, Policy("categories:\n  SSN: {action: drop}\n"), metrics);
        Assert.Null(m);
        Assert.Equal(ClassifyOutcome.Dropped, outcome);
        Assert.Equal(1, metrics.Exchanges["dropped"].Value);
    }

    [Fact]
    public void Endpoint_globs_scope_a_category()
    {
        var policy = Policy("categories:\n  EMAIL: {action: mask, endpoints: ['*.example.com/api/users/**']}\n");
        using var inScope = Make("/api/users/7/profile", responseBody: "{\"e\":\"a@example.com\"}");
        Assert.Equal(ClassifyOutcome.Masked, Run(inScope, policy).Outcome);
        using var outOfScope = Make("/api/orders/7", responseBody: "{\"e\":\"a@example.com\"}");
        var (m, outcome, c) = Run(outOfScope, policy);
        Assert.Equal(ClassifyOutcome.Clean, outcome);
        Assert.Empty(c.Findings);
        Assert.Equal("{\"e\":\"a@example.com\"}", m!.Value.GetProperty("responsePayload").GetString());
    }

    [Fact]
    public void Except_lists_leave_listed_values_out()
    {
        var policy = Policy("categories:\n  EMAIL: {action: mask, except: ['.*@example\\.com', 'root@localhost\\.lan']}\n");
        using var x = Make("/u", responseBody: "{\"a\":\"ops@example.com\",\"b\":\"carol@corp.io\"}");
        var (m, _, c) = Run(x, policy);
        Assert.Single(c.Findings);
        Assert.StartsWith("{\"a\":\"ops@example.com\",\"b\":\"[EMAIL:", m!.Value.GetProperty("responsePayload").GetString());
    }

    [Fact]
    public void Custom_categories_by_value_and_by_key()
    {
        var policy = Policy("""
            builtins: listed
            categories:
              EMPLOYEE_ID:
                values: 'EMP-[0-9]{6}'
                except: ['EMP-000000']
                action: mask
              INTERNAL_NOTE:
                keys: '^internal_?notes?$'
              TENANT:
                keys: 'tenant'
                values: 't-[a-z]+'
            """);
        using var x = Make("/staff?who=EMP-123456", responseBody:
            "{\"id\":\"EMP-654321\",\"boss\":\"EMP-000000\",\"internalNote\":\"fired\",\"tenant\":\"t-acme\",\"other\":\"t-zzz\"}",
            responseHeaders: [("X-Tenant", "t-globex")]);
        var (m, _, c) = Run(x, policy);
        Assert.Equal("/staff?who=[EMPLOYEE_ID:" + Hash("EMPLOYEE_ID", "EMP-123456")[13..], m!.Value.GetProperty("path").GetString());
        var names = c.Findings.Select(f => (policy.NameOf(f.Category), f.Where)).ToList();
        Assert.Contains(("EMPLOYEE_ID", "request.query.who"), names);
        Assert.Contains(("EMPLOYEE_ID", "response.body.id"), names);
        Assert.DoesNotContain(("EMPLOYEE_ID", "response.body.boss"), names);
        Assert.Contains(("INTERNAL_NOTE", "response.body.internalNote"), names);
        Assert.Contains(("TENANT", "response.body.tenant"), names);
        Assert.Contains(("TENANT", "response.header.x-tenant"), names);
        Assert.DoesNotContain(("TENANT", "response.body.other"), names);
        Assert.DoesNotContain(names, n => n.Item1 == "EMAIL");
    }

    [Fact]
    public void Headers_query_strings_and_forms_are_classified_and_masked_in_place()
    {
        var policy = Policy("categories:\n  BEARER_TOKEN: {action: mask}\n  EMAIL: {action: mask}\n  PHONE_NUMBER: {action: mask}\n");
        using var x = Make("/signup?email=alice%40example.com&ref=home", requestBody: "name=Al&phone=%2B14155552671&plan=pro",
            requestType: "application/x-www-form-urlencoded", requestHeaders: [("Authorization", "Bearer " + Jwt), ("X-Trace", "t1")]);
        var (m, _, c) = Run(x, policy);
        var path = m!.Value.GetProperty("path").GetString()!;
        Assert.StartsWith("/signup?email=[EMAIL:", path);
        Assert.EndsWith("]&ref=home", path);
        var body = m.Value.GetProperty("requestPayload").GetString()!;
        Assert.StartsWith("name=Al&phone=[PHONE_NUMBER:", body);
        Assert.EndsWith("]&plan=pro", body);
        var headers = Headers(m.Value, "requestHeaders");
        Assert.StartsWith("Bearer [BEARER_TOKEN:", headers["Authorization"]);
        Assert.Equal("t1", headers["X-Trace"]);
        Assert.Equal("api.example.com:8443", headers["Host"]);
        Assert.Contains("EMAIL@request.query.email", headers["x-collector-sensitive"]);
        Assert.Contains("PHONE_NUMBER@request.body.phone", headers["x-collector-sensitive"]);
        Assert.Contains("BEARER_TOKEN@request.header.authorization", headers["x-collector-sensitive"]);
        Assert.Contains(c.Findings, f => f.Location == SensitiveLocation.RequestQuery);
    }

    [Fact]
    public void Json_keys_are_classified_apart_from_values()
    {
        using var x = Make("/m", responseBody: "{\"alice@example.com\":{\"role\":\"admin\"}}");
        var (_, _, c) = Run(x, SensitivePolicy.Default);
        Assert.Equal([new Finding((int)BuiltIn.Email, SensitiveLocation.ResponseBody, "response.body.alice@example.com#key")], c.Findings);
    }

    [Fact]
    public void Text_bodies_are_scanned_and_binary_ones_are_not()
    {
        using var text = Make("/t", responseBody: "contact: alice@example.com\n", responseType: "text/plain");
        Assert.Single(Run(text, SensitivePolicy.Default).Classifier.Findings);
        using var binary = Make("/b", responseBody: "alice@example.com", responseType: "image/png");
        Assert.Empty(Run(binary, SensitivePolicy.Default).Classifier.Findings);
    }

    [Fact]
    public void Endpoint_templates_fold_numbers_and_uuids()
    {
        Assert.Equal("api.example.com/users/INTEGER/orders/UUID",
            EndpointTemplates.Make("api.example.com", "/users/42/orders/550e8400-e29b-41d4-a716-446655440000"u8));
        Assert.Equal("h/v1/items/", EndpointTemplates.Make("h", "/v1/items/"u8));
        Assert.Equal("h/a", EndpointTemplates.Make("h", "http://other:80/a"u8));
        Assert.Equal("api.example.com", EndpointTemplates.HostWithoutPort("api.example.com:8443"));
        Assert.Equal("[::1]:80", EndpointTemplates.HostWithoutPort("[::1]:80"));
    }

    [Fact]
    public void Finding_series_stop_at_the_cap_and_overflow_into_one_label()
    {
        var metrics = new SensitiveMetrics(3);
        for (var i = 0; i < 10; i++)
        {
            using var x = Make($"/a{i}/b", responseBody: "{\"e\":\"a@example.com\"}");
            Run(x, SensitivePolicy.Default, metrics);
        }
        var series = metrics.FindingSeries().ToList();
        Assert.Equal(4, series.Count); // 3 endpoints, then the overflow
        Assert.Equal(7, series.Single(s => s.Labels.Contains(("endpoint", SensitiveMetrics.OverflowEndpoint))).Value);
        var text = new PrometheusWriter();
        metrics.Render(text);
        Assert.Contains("collector_sensitive_findings_total{category=\"EMAIL\",location=\"response.body\",endpoint=\"api.example.com/a0/b\"} 1", text.ToString());
        Assert.Contains("collector_sensitive_classify_seconds_total ", text.ToString());
    }

    [Fact]
    public void A_reloaded_policy_names_its_own_categories_in_the_note()
    {
        // the same custom id, the same place, another name: a note remembered from the policy
        // before must not be served again
        var before = Policy("builtins: listed\ncategories:\n  EMPLOYEE_ID: {values: 'EMP-[0-9]{6}'}\n");
        var after = Policy("builtins: listed\ncategories:\n  STAFF_NUMBER: {values: 'EMP-[0-9]{6}'}\n");
        var classifier = new SensitiveClassifier(new SensitiveMetrics(100), Key);
        string? Note(SensitivePolicy policy)
        {
            using var x = Make("/staff", responseBody: "{\"id\":\"EMP-654321\"}");
            var parts = new Collector.Output.MessageParts();
            Collector.Output.AktoMessage.Decode(x, 1 << 20);
            Collector.Output.AktoMessage.Prepare(parts, x, Identity);
            Assert.Equal(ClassifyOutcome.Reported, classifier.Classify(x, parts, policy, 1 << 20));
            var note = parts.Response.SensitiveNote;
            parts.Release();
            return note;
        }
        Assert.Equal("EMPLOYEE_ID@response.body.id", Note(before));
        Assert.Equal("STAFF_NUMBER@response.body.id", Note(after));
        Assert.Equal("EMPLOYEE_ID@response.body.id", Note(before));
    }

    [Fact]
    public void The_classify_clock_is_read_for_some_exchanges_that_stand_for_every_one()
    {
        // each timed exchange counts for itself and the untimed ones after it: their sum is every
        // exchange, bar the untimed ones still to come after the last timed one (at most 15)
        var metrics = new SensitiveMetrics(100);
        var classifier = new SensitiveClassifier(metrics, Key);
        using var x = Make("/orders/1", responseBody: "{\"id\":1}");
        var parts = new Collector.Output.MessageParts();
        Collector.Output.AktoMessage.Decode(x, 1 << 20);
        for (var n = 1; n <= 3000; n++)
        {
            Collector.Output.AktoMessage.Prepare(parts, x, Identity);
            classifier.Classify(x, parts, SensitivePolicy.Default, 1 << 20);
            parts.Release();
            if (n == 1) Assert.True(metrics.ClassifyTicks.Value > 0); // the first is timed
            Assert.InRange(classifier.ExchangesTimesStandFor, n, n + 15);
        }
        Assert.InRange(classifier.TimedExchanges, 3000 / 12, 3000 / 6); // about one in 8.5
    }

    [Fact]
    public void With_the_policy_off_the_message_is_what_it_always_was()
    {
        using var x = Make("/api/v1/customers/42", responseBody: Customer);
        var before = new Collector.Output.MessageBuffer();
        Collector.Output.AktoMessage.Write(before, x, Identity, 1764000000, 1 << 20);
        using var y = Make("/api/v1/customers/42", responseBody: Customer);
        var (m, _, _) = Run(y, Policy("categories:\n  EMAIL: {action: off}\n  SSN: {action: off}\n  CREDIT_CARD: {action: off}\n  JWT: {action: off}\n"));
        Assert.Equal(JsonDocument.Parse(before.WrittenMemory.ToArray()).RootElement.GetRawText(), m!.Value.GetRawText());
    }

    [Fact]
    public void Header_values_skipped_by_the_masks_of_their_block_are_those_with_nothing_in_them()
    {
        // each value as the classifier read it before the header block was read at once: scanned
        // on its own, under its name
        string[] pieces = ["415-555-2671", "+1 415 555 2671", "536-90-4399", "4111 1111 1111 1111", "203.0.113.9", "fe80::1",
            "10:00:00", "alice@example.com", "AKIAIOSFODNN7EXAMPLE", "550e8400-e29b-41d4-a716-446655440000", "DE89370400440532013000",
            "Tue, 25 Nov 2025 10:00:00 GMT", "-----BEGIN RSA PRIVATE KEY-----", "gzip, deflate", "nginx/1.22.1", " ", "; ", "12", "x"];
        var random = new Random(5);
        for (var n = 0; n < 400; n++)
        {
            var headers = new List<(string, string)>();
            for (var h = random.Next(1, 12); h > 0; h--)
                headers.Add(($"X-Field-{headers.Count}", string.Concat(Enumerable.Range(0, random.Next(1, 4)).Select(_ => pieces[random.Next(pieces.Length)]))));
            using var x = Make("/h", requestHeaders: headers.ToArray(), responseHeaders: headers.Take(3).ToArray());
            var found = Run(x, SensitivePolicy.Default).Classifier.Findings
                .Select(f => (f.Where, SensitivePolicy.Default.NameOf(f.Category))).Order().ToList();
            var expected = new List<(string, string)>();
            foreach (var (side, list) in new[] { ("request", headers), ("response", headers.Take(3).ToList()) })
                foreach (var (name, value) in list)
                {
                    var matches = new List<ValueMatch>();
                    ValueScanner.Scan(Encoding.UTF8.GetBytes(value), KeyHint.None, ValueKind.Text, ValueScanner.AllBuiltIns, matches,
                        name: Encoding.UTF8.GetBytes(name));
                    expected.AddRange(matches.Select(m => ($"{side}.header.{name.ToLowerInvariant()}", Categories.BuiltInNames[(int)m.Category])));
                }
            Assert.Equal(expected.Order().ToList(), found);
        }
    }

    [Fact]
    public void Endpoint_templates_stay_right_past_what_their_table_holds()
    {
        var templates = new EndpointTemplates();
        var made = new Dictionary<string, string>();
        for (var round = 0; round < 2; round++)
            for (var i = 0; i < 10_000; i++)
            {
                var target = i % 3 == 0 ? $"/api/v1/items/{i}" : $"/api/v1/shop{i % 500}/items?page={i}";
                using var x = Make(target, host: i % 2 == 0 ? "a.example:80" : "b.example");
                var t = templates.Of(x.Request);
                Assert.Equal(EndpointTemplates.Make(EndpointTemplates.HostWithoutPort(x.Request.Header("host")!), Encoding.ASCII.GetBytes(target.Split('?')[0])), t);
                // an equal template is the same string object while the table of templates has room
                if (made.TryGetValue(t, out var first)) Assert.Same(first, t);
                else made[t] = t;
            }
    }

    [Fact]
    public void Endpoint_templates_seen_before_are_found_again_whatever_part_of_the_path_differs()
    {
        // ids in the middle of paths of one length, under one prefix: found again without being made again
        var templates = new EndpointTemplates();
        var exchanges = Enumerable.Range(1000, 100).Select(i => Make($"/api/v1/users/{i}/profile/settings")).ToList();
        foreach (var x in exchanges) templates.Of(x.Request);
        var before = GC.GetAllocatedBytesForCurrentThread();
        foreach (var x in exchanges) Assert.Equal("api.example.com/api/v1/users/INTEGER/profile/settings", templates.Of(x.Request));
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
        foreach (var x in exchanges) x.Dispose();
    }

    [Fact]
    public void Custom_categories_name_nested_keys_and_matches_in_keys_by_their_path()
    {
        var policy = Policy("""
            builtins: listed
            categories:
              EMPLOYEE_ID:
                values: 'EMP-[0-9]{6}'
            """);
        const string body = "{\"staff\":{\"lead\":{\"id\":\"EMP-123456\"},\"list\":[{\"id\":\"EMP-222222\"}]},\"EMP-654321\":1}";
        using var x = Make("/staff", responseBody: body);
        var (_, _, c) = Run(x, policy);
        var names = c.Findings.Select(f => f.Where).ToList();
        Assert.Equal(["response.body.staff.lead.id", "response.body.staff.list.id", "response.body.EMP-654321#key"], names);
        // each place is made once: the same exchange again names it with the same string
        using var y = Make("/staff", responseBody: body);
        var classifier = c;
        var parts = new Collector.Output.MessageParts();
        Collector.Output.AktoMessage.Decode(y, 1 << 20);
        Collector.Output.AktoMessage.Prepare(parts, y, Identity);
        classifier.Classify(y, parts, policy, 1 << 20);
        parts.Release();
        Assert.Same(names[0], classifier.Findings[0].Where);
    }
}
