namespace Collector.Http;

/// <summary>Metric labels of HttpDrops, made once (a bounded set: the parser's reasons are constants).</summary>
internal static class DropLabels
{
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<(string, string), string> Cache = new();

    private static string Label(string prefix, string reason) =>
        Cache.TryGetValue((prefix, reason), out var s) ? s : Cache.GetOrAdd((prefix, reason), k => k.Item1 + k.Item2);

    public static string Request(string reason) => Label("request_", reason);
    public static string Response(string reason) => Label("response_", reason);
    public static string SyncLost(string reason) => Label("sync_lost_", reason);
    public static string Malformed(string reason) => Label("malformed_", reason);

    public static string WithoutResponse(string endReason) =>
        endReason == "close" ? "request_without_response" : Label("request_without_response_", endReason);
}
