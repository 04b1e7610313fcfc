using System.Text.Json;

namespace Collector.Tests.Support;

/// <summary>One record as kcat, an independent consumer, read it from the topic.</summary>
public sealed record KafkaRecord(int Partition, long Offset, IReadOnlyList<KeyValuePair<string, string>> Headers, string? Key, string Payload)
{
    public string? Header(string name) => Headers.Where(h => h.Key == name).Select(h => h.Value).FirstOrDefault();

    public JsonElement Json() => JsonDocument.Parse(Payload).RootElement.Clone();
}

/// <summary>Reads a topic from the beginning to its end with kcat (Debian's kcat on Debian's
/// librdkafka, no consumer group), as JSON envelopes.</summary>
public static class Kcat
{
    public static List<KafkaRecord> Consume(string bootstraps, string topic) => ConsumeWithLog(bootstraps, topic, debugFetch: false).Records;

    /// <summary>debugFetch: librdkafka's fetch debug log, which names the compression codec of
    /// every MessageSet it fetched ("..., lz4)").</summary>
    public static (List<KafkaRecord> Records, string Log) ConsumeWithLog(string bootstraps, string topic, bool debugFetch)
    {
        var args = $"-C -J -b {bootstraps} -t {topic} -o beginning -e" + (debugFetch ? " -X debug=fetch" : " -q");
        var (code, output, err) = Shell.Run("kcat", args, TimeSpan.FromSeconds(60));
        if (code != 0)
        {
            if (err.Contains("Unknown topic", StringComparison.OrdinalIgnoreCase)) return ([], err);
            throw new InvalidOperationException($"kcat {args} exited {code}: {err}");
        }
        var records = new List<KafkaRecord>();
        foreach (var line in output.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            using var doc = JsonDocument.Parse(line);
            var r = doc.RootElement;
            var headers = new List<KeyValuePair<string, string>>();
            if (r.TryGetProperty("headers", out var h))
            {
                var flat = h.EnumerateArray().Select(e => e.GetString()!).ToArray();
                for (var i = 0; i + 1 < flat.Length; i += 2) headers.Add(new(flat[i], flat[i + 1]));
            }
            records.Add(new KafkaRecord(r.GetProperty("partition").GetInt32(), r.GetProperty("offset").GetInt64(), headers,
                r.GetProperty("key").ValueKind == JsonValueKind.Null ? null : r.GetProperty("key").GetString(),
                r.GetProperty("payload").GetString() ?? ""));
        }
        return (records, err);
    }

    /// <summary>Consumes until match holds for count records or the time is up.</summary>
    public static async Task<List<KafkaRecord>> WaitForAsync(string bootstraps, string topic, Func<KafkaRecord, bool> match, int count,
        TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(30));
        while (true)
        {
            var found = Consume(bootstraps, topic).Where(match).ToList();
            if (found.Count >= count || DateTime.UtcNow > deadline) return found;
            await Task.Delay(500);
        }
    }
}
