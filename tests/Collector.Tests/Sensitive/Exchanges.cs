using System.Text;
using System.Text.Json;
using Collector.Connections;
using Collector.Http;
using Collector.Metrics;
using Collector.Output;
using Collector.Sensitive;

namespace Collector.Tests.Sensitive;

/// <summary>Exchanges built by hand for the sensitive-data tests, and the steps of the output run
/// on them as the pipeline runs them.</summary>
internal static class Exchanges
{
    public static readonly byte[] Key = Encoding.UTF8.GetBytes("test-mask-key-0123456789");
    public static readonly AktoIdentity Identity = new("1000000", "0", "ds", []);

    public static HttpExchange Make(string target, string requestBody = "", string responseBody = "",
        string requestType = "application/json", string responseType = "application/json",
        (string, string)[]? requestHeaders = null, (string, string)[]? responseHeaders = null, string host = "api.example.com:8443")
    {
        var request = new HttpMessage { IsRequest = true, Method = requestBody.Length > 0 ? "POST" : "GET", Target = target, Version = "HTTP/1.1" };
        request.Headers.Add(new("Host", host));
        if (requestBody.Length > 0) request.Headers.Add(new("Content-Type", requestType));
        foreach (var (n, v) in requestHeaders ?? []) request.Headers.Add(new(n, v));
        request.AppendBody(Encoding.UTF8.GetBytes(requestBody), 1 << 20);
        var response = new HttpMessage { StatusCode = 200, Reason = "OK", Version = "HTTP/1.1" };
        response.Headers.Add(new("Content-Type", responseType));
        foreach (var (n, v) in responseHeaders ?? []) response.Headers.Add(new(n, v));
        response.AppendBody(Encoding.UTF8.GetBytes(responseBody), 1 << 20);
        return new HttpExchange
        {
            Connection = new ConnectionId(4121, 17, 0),
            Info = new ConnectionInfo(System.Net.IPAddress.Parse("10.0.0.9"), 8080, System.Net.IPAddress.Parse("10.0.0.7"), 51334,
                Collector.Events.ConnectionOrigin.Accept, "server"),
            Direction = 1,
            Source = Collector.Events.EventSource.Syscall,
            Request = request,
            Response = response,
        };
    }

    /// <summary>Decode, prepare, classify, write: the message (null when dropped) and the classifier.</summary>
    public static (JsonElement? Message, ClassifyOutcome Outcome, SensitiveClassifier Classifier) Run(HttpExchange x, SensitivePolicy policy,
        SensitiveMetrics? metrics = null, byte[]? key = null)
    {
        var parts = new MessageParts();
        var classifier = new SensitiveClassifier(metrics ?? new SensitiveMetrics(100), key ?? Key);
        AktoMessage.Decode(x, 1 << 20);
        AktoMessage.Prepare(parts, x, Identity);
        var outcome = classifier.Classify(x, parts, policy, 1 << 20);
        if (outcome == ClassifyOutcome.Dropped) return (null, outcome, classifier);
        var buffer = new MessageBuffer();
        AktoMessage.Write(buffer, x, Identity, 1764000000, 1 << 20, parts);
        parts.Release();
        return (JsonDocument.Parse(buffer.WrittenMemory.ToArray()).RootElement.Clone(), outcome, classifier);
    }

    public static Dictionary<string, string> Headers(JsonElement m, string field) =>
        JsonSerializer.Deserialize<Dictionary<string, string>>(m.GetProperty(field).GetString()!)!;

    public static SensitivePolicy Policy(string yaml) => SensitivePolicy.Parse(yaml, "test");
}
