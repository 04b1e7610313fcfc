using System.Net;
using System.Text;
using System.Text.Json;
using Collector.Events;
using Collector.Tests.Support;

namespace Collector.Tests.Http;

/// <summary>Replays the corpus of real captures (tests/Collector.Tests/Corpus/*.json: the kernel
/// events the collector read while nginx, python http.server, node and a Kestrel app talked to curl,
/// python urllib and node) through the connection table and compares what comes out with what the
/// programs were told to send (Corpus/record/record.py wrote both).</summary>
public sealed class CorpusTests
{
    private static string Dir => Path.Combine(Repo.Root, "tests", "Collector.Tests", "Corpus");

    public static IEnumerable<object[]> Captures() =>
        Directory.GetFiles(Path.Combine(Repo.Root, "tests", "Collector.Tests", "Corpus"), "*.json")
            .Select(f => new object[] { Path.GetFileNameWithoutExtension(f) }).OrderBy(o => (string)o[0]);

    [Fact]
    public void The_corpus_covers_every_server_and_client()
    {
        var names = Captures().Select(o => (string)o[0]).ToList();
        Assert.True(names.Count >= 8, string.Join(", ", names));
        foreach (var who in new[] { "nginx", "python", "node", "kestrel", "curl", "urllib", "tls" })
            Assert.Contains(names, n => n.Contains(who));
    }

    [Theory]
    [MemberData(nameof(Captures))]
    public void A_real_capture_replays_to_exactly_the_exchanges_sent(string name) => Check(name, split: null);

    [Theory]
    [MemberData(nameof(Captures))]
    public void A_real_capture_cut_into_smaller_events_at_random_replays_the_same(string name)
    {
        // the same bytes at the same positions, delivered in pieces of 1 to 200 bytes
        foreach (var seed in new[] { 1, 2, 3 })
            Check(name, split: new Random(seed));
    }

    private static void Check(string name, Random? split)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(Dir, name + ".json")));
        using var h = new Harness();
        var events = doc.RootElement.GetProperty("events").EnumerateArray().ToList();
        Assert.NotEmpty(events);
        foreach (var e in events) Replay(h, e, split);
        h.Table.EndAll("shutdown");
        Assert.Equal(0, h.Table.RetainedBytes);

        var unmatched = h.Exchanges.ToList();
        foreach (var want in doc.RootElement.GetProperty("expected").EnumerateArray())
        {
            var direction = int.Parse(want.GetProperty("direction").GetString()!);
            var method = want.GetProperty("method").GetString()!;
            var path = want.GetProperty("path").GetString()!;
            var status = int.Parse(want.GetProperty("status").GetString()!);
            var candidates = unmatched.Where(x => x.Direction == direction && x.Method == method && x.Target == path && x.Status == status).ToList();
            Assert.True(candidates.Count > 0,
                $"{name}: no exchange {direction} {method} {path} {status}; got: {string.Join("; ", h.Exchanges.Select(x => $"{x.Direction} {x.Method} {x.Target} {x.Status}"))}; drops: {h.DropSummary}");
            var match = candidates.FirstOrDefault(x => Matches(x, want));
            Assert.True(match is not null, $"{name}: {direction} {method} {path}: {Explain(candidates[0], want)}");
            unmatched.Remove(match!);
        }
        Assert.True(unmatched.Count == 0, $"{name}: exchanges that were not sent: {string.Join("; ", unmatched.Select(x => $"{x.Direction} {x.Method} {x.Target} {x.Status}"))}");
        // a clean capture loses nothing; 1xx answers are skipped by design
        Assert.True(h.TotalDrops == h.Drops("interim_response"), $"{name}: {h.DropSummary}");
    }

    private static bool Matches(Captured x, JsonElement want) => Explain(x, want) is null;

    private static string? Explain(Captured x, JsonElement want)
    {
        if (x.Akto("process_name") != want.GetProperty("process").GetString())
            return $"process {x.Akto("process_name")}";
        foreach (var (field, payload) in new[] { ("requestBody", "requestPayload"), ("responseBody", "responsePayload") })
        {
            var body = want.GetProperty(field);
            if (body.ValueKind == JsonValueKind.Null) continue; // a server-made error page
            if (x.Akto(payload) != body.GetString())
                return $"{payload} was {x.Akto(payload).Length} chars: {Cut(x.Akto(payload))}";
        }
        foreach (var (field, akto) in new[] { ("requestHeaders", "requestHeaders"), ("responseHeaders", "responseHeaders") })
        {
            if (!want.TryGetProperty(field, out var headers)) continue;
            var got = x.AktoHeaders(akto);
            foreach (var p in headers.EnumerateObject())
            {
                if (!got.TryGetValue(p.Name, out var v)) return $"{akto} has no {p.Name}";
                if (p.Value.ValueKind != JsonValueKind.Null && v != p.Value.GetString()) return $"{akto} {p.Name} is {v}";
            }
        }
        return null;
    }

    private static string Cut(string s) => s.Length > 80 ? s[..80] + "…" : s;

    private static unsafe void Replay(Harness h, JsonElement e, Random? split)
    {
        var header = new EventHeader
        {
            TimestampNs = e.GetProperty("ts").GetUInt64(),
            Tgid = e.GetProperty("tgid").GetUInt32(),
        };
        switch (e.GetProperty("type").GetString())
        {
            case "open":
            {
                header.Type = EventType.Open;
                header.Fd = e.GetProperty("fd").GetUInt32();
                header.Generation = e.GetProperty("gen").GetUInt32();
                var o = new OpenEvent
                {
                    Header = header,
                    Family = e.GetProperty("family").GetUInt16(),
                    LocalPort = e.GetProperty("localPort").GetUInt16(),
                    RemotePort = e.GetProperty("remotePort").GetUInt16(),
                    Origin = e.GetProperty("origin").GetString() switch
                    {
                        "accept" => ConnectionOrigin.Accept,
                        "connect" => ConnectionOrigin.Connect,
                        _ => ConnectionOrigin.Unknown,
                    },
                };
                IPAddress.Parse(e.GetProperty("local").GetString()!).GetAddressBytes().CopyTo(new Span<byte>(o.LocalAddr, 16));
                IPAddress.Parse(e.GetProperty("remote").GetString()!).GetAddressBytes().CopyTo(new Span<byte>(o.RemoteAddr, 16));
                Encoding.UTF8.GetBytes(e.GetProperty("comm").GetString()!).CopyTo(new Span<byte>(o.Comm, 15));
                h.Table.OnOpen(o);
                break;
            }
            case "data":
            {
                header.Type = EventType.Data;
                header.Fd = e.GetProperty("fd").GetUInt32();
                header.Generation = e.GetProperty("gen").GetUInt32();
                var payload = e.GetProperty("data").GetBytesFromBase64();
                var d = new DataEventHeader
                {
                    Header = header,
                    Position = e.GetProperty("pos").GetUInt64(),
                    CallBytes = e.GetProperty("callBytes").GetUInt32(),
                    DataLength = (uint)payload.Length,
                    Direction = e.GetProperty("dir").GetString() == "egress" ? StreamDirection.Egress : StreamDirection.Ingress,
                    Source = (CaptureSources.FromDumpName(e.GetProperty("src").GetString()!)
                              ?? throw new InvalidDataException($"unknown src in a corpus line: {e}")).Id,
                };
                if (split is null)
                {
                    h.Table.OnData(d, payload);
                    break;
                }
                for (var at = 0; at < payload.Length;)
                {
                    var n = Math.Min(payload.Length - at, split.Next(1, 201));
                    var piece = d;
                    piece.Position = d.Position + (ulong)at;
                    piece.DataLength = (uint)n;
                    h.Table.OnData(piece, payload.AsSpan(at, n));
                    at += n;
                }
                break;
            }
            case "close":
                header.Type = EventType.Close;
                header.Fd = e.GetProperty("fd").GetUInt32();
                header.Generation = e.GetProperty("gen").GetUInt32();
                h.Table.OnClose(new CloseEvent
                {
                    Header = header,
                    EgressBytes = e.GetProperty("egressBytes").GetUInt64(),
                    IngressBytes = e.GetProperty("ingressBytes").GetUInt64(),
                });
                break;
            case "exit":
                h.Table.OnExit(header.Tgid, header.TimestampNs);
                break;
        }
    }
}
