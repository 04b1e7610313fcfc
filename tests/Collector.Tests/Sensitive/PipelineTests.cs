using System.Text;
using System.Text.Json;
using Collector.Configuration;
using Collector.Filtering;
using Collector.Metrics;
using Collector.Output;
using Collector.Sensitive;
using Microsoft.Extensions.Logging.Abstractions;
using static Collector.Tests.Sensitive.Exchanges;

namespace Collector.Tests.Sensitive;

/// <summary>The output pipeline with a policy in effect: what reaches the sink, what does not,
/// what is counted, and a policy replaced between two exchanges.</summary>
public class PipelineTests
{
    private sealed class ListSink : IMessageSink
    {
        public List<JsonElement> Messages { get; } = new();
        public void Publish(ReadOnlySpan<byte> message, ReadOnlySpan<byte> collectionDetails) =>
            Messages.Add(JsonDocument.Parse(message.ToArray()).RootElement.Clone());
        public Task<long> FlushAsync(TimeSpan grace) => Task.FromResult(0L);
        public bool? Reachable => null;
        public void Idle() { }
        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }

    private static (OutputPipeline Pipeline, ListSink Sink, CollectorMetrics Metrics) Pipeline(SensitivePolicySource? policies)
    {
        var settings = new Settings();
        var metrics = new CollectorMetrics();
        var sink = new ListSink();
        var pipeline = new OutputPipeline(new ExchangeFilter(settings, [], new Dictionary<string, string>()), sink, metrics, Identity,
            settings.MaxBodyBytes, settings.KafkaMaxMessageBytes, NullLogger.Instance, policies, Key);
        return (pipeline, sink, metrics);
    }

    private const string Body = "{\"name\":\"Alice\",\"ssn\":\"536-90-4399\",\"card\":\"4111 1111 1111 1111\",\"email\":\"alice@example.com\"}";

    [Fact]
    public void Report_mask_and_drop_through_the_pipeline_with_a_policy_reloaded_between_exchanges()
    {
        var policies = new SensitivePolicySource(SensitivePolicy.Default);
        var (pipeline, sink, metrics) = Pipeline(policies);
        var buffer = new MessageBuffer();

        using (var x = Make("/api/users/17", responseBody: Body)) pipeline.Handle(x, buffer);
        var reported = Assert.Single(sink.Messages);
        Assert.Equal(Body, reported.GetProperty("responsePayload").GetString());
        Assert.Equal("SSN@response.body.ssn, CREDIT_CARD@response.body.card, EMAIL@response.body.email",
            Headers(reported, "responseHeaders")[AktoMessage.SensitiveHeader]);
        Assert.Equal(1, metrics.Sensitive.Findings("SSN", "response.body", "api.example.com/api/users/INTEGER").Value);
        Assert.Contains("collector_sensitive_findings_total{category=\"CREDIT_CARD\",location=\"response.body\",endpoint=\"api.example.com/api/users/INTEGER\"} 1",
            metrics.Render());

        policies.Replace(Policy("categories:\n  SSN: {action: mask}\n  CREDIT_CARD: {action: mask}\n"));
        using (var x = Make("/api/users/18", responseBody: Body)) pipeline.Handle(x, buffer);
        var masked = sink.Messages[1].GetProperty("responsePayload").GetString()!;
        Assert.DoesNotContain("536-90-4399", masked);
        Assert.DoesNotContain("4111 1111 1111 1111", masked);
        Assert.Contains("\"email\":\"alice@example.com\"", masked);
        Assert.Contains("\"name\":\"Alice\"", masked);
        Assert.Equal(1, metrics.Sensitive.Exchanges["masked"].Value);

        policies.Replace(Policy("categories:\n  SSN: {action: drop}\n"));
        using (var x = Make("/api/users/19", responseBody: Body)) pipeline.Handle(x, buffer);
        Assert.Equal(2, sink.Messages.Count);
        Assert.Equal(1, metrics.ExchangesFiltered["sensitive_data"].Value);
        Assert.Equal(1, metrics.Sensitive.Exchanges["dropped"].Value);
        Assert.Contains("collector_exchanges_filtered_total{reason=\"sensitive_data\"} 1", metrics.Render());
        Assert.True(metrics.Sensitive.ClassifyTicks.Value > 0);
    }

    [Fact]
    public void Without_a_policy_the_pipeline_writes_what_it_always_wrote()
    {
        var (plain, plainSink, _) = Pipeline(null);
        var (off, offSink, offMetrics) = Pipeline(new SensitivePolicySource(Policy("builtins: listed\n")));
        var buffer = new MessageBuffer();
        using (var x = Make("/api/users/17", responseBody: Body)) plain.Handle(x, buffer);
        using (var x = Make("/api/users/17", responseBody: Body)) off.Handle(x, buffer);
        Assert.Equal(plainSink.Messages.Single().GetRawText(), offSink.Messages.Single().GetRawText());
        Assert.Equal(1, offMetrics.Sensitive.Exchanges["clean"].Value);
    }

    [Fact]
    public void A_masked_body_is_still_cut_to_fit_the_kafka_limit()
    {
        var policies = new SensitivePolicySource(Policy("categories:\n  EMAIL: {action: mask}\n"));
        var settings = new Settings();
        var metrics = new CollectorMetrics();
        var sink = new ListSink();
        var pipeline = new OutputPipeline(new ExchangeFilter(settings, [], new Dictionary<string, string>()), sink, metrics, Identity,
            settings.MaxBodyBytes, 20_000, NullLogger.Instance, policies, Key);
        var text = string.Concat(Enumerable.Repeat("write to alice@example.com please. ", 2000));
        using (var x = Make("/t", responseBody: text, responseType: "text/plain")) pipeline.Handle(x, new MessageBuffer());
        var m = Assert.Single(sink.Messages);
        var payload = m.GetProperty("responsePayload").GetString()!;
        Assert.DoesNotContain("alice@example.com", payload);
        Assert.StartsWith("write to [EMAIL:", payload);
        Assert.True(Encoding.UTF8.GetByteCount(m.GetRawText()) < 20_000);
        Assert.Contains("cap", Headers(m, "responseHeaders")[AktoMessage.TruncatedHeader]);
    }
}
