using System.Text;
using Collector.Events;
using FsCheck;
using FsCheck.Fluent;

namespace Collector.Tests.Http;

/// <summary>Properties over generated traffic (FsCheck): valid streams, cut anywhere and interleaved
/// across connections, come out exactly as sent; hostile bytes never throw, never grow memory past
/// the budget, and are counted.</summary>
public sealed class PropertyTests
{
    private static Config Runs(int n) => Config.QuickThrowOnFailure.WithMaxTest(n);

    [Fact]
    public void Any_valid_stream_cut_anywhere_and_interleaved_yields_exactly_the_exchanges_sent()
    {
        Prop.ForAll(TrafficModel.Arbitrary, ReplayMatches).Check(Runs(300));
    }

    /// <summary>Replays a scenario through a fresh table and compares every exchange with what was sent.</summary>
    public static void ReplayMatches(Scenario scenario)
    {
        {
            using var h = new Harness();
            var fd = 10u;
            var conns = scenario.Conns.Select(c => (Spec: c, Conn: h.Open(fd++, c.TracedIsServer, sendOpen: c.SendOpen))).ToArray();
            var queues = conns.Select(c => new Queue<(StreamDirection Dir, byte[] Bytes)>(
                TrafficModel.Events(TrafficModel.Segments(c.Spec, c.Conn), c.Spec.CutSeed, c.Spec.MaxCut))).ToArray();
            var r = new Random(scenario.InterleaveSeed);
            while (queues.Any(q => q.Count > 0))
            {
                var pick = r.Next(queues.Length);
                while (queues[pick].Count == 0) pick = (pick + 1) % queues.Length;
                var (dir, bytes) = queues[pick].Dequeue();
                h.Event(conns[pick].Conn, dir, bytes);
            }
            foreach (var (_, conn) in conns) h.Close(conn);

            foreach (var (spec, conn) in conns)
            {
                var got = h.Exchanges.Where(x => x.Connection.Fd == conn.Fd).ToList();
                Assert.True(spec.Exchanges.Length == got.Count,
                    $"{scenario}\nfd {conn.Fd}: expected {spec.Exchanges.Length} exchanges, got {got.Count}; drops: {h.DropSummary}");
                for (var i = 0; i < got.Count; i++)
                {
                    var want = spec.Exchanges[i];
                    var x = got[i];
                    var where = $"{scenario}\nfd {conn.Fd} exchange {i}";
                    Assert.True(want.Request.Method == x.Method, where);
                    Assert.True(want.Request.Target == x.Target, where);
                    Assert.True(want.Request.Version == x.Version, where);
                    Assert.True(want.Response.Status == x.Status, where);
                    Assert.True(want.Response.Reason == x.Reason, $"{where}: reason '{x.Reason}'");
                    Assert.True(want.Request.Body.AsSpan().SequenceEqual(x.RequestBody), $"{where}: request body");
                    Assert.True(want.Response.Body.AsSpan().SequenceEqual(x.ResponseBody), $"{where}: response body");
                    Assert.Equal(TrafficModel.ExpectedRequestFields(want.Request).Select(f => (f.Name, f.Value)),
                        x.RequestHeaders.Select(kv => (kv.Key, kv.Value)));
                    Assert.Equal(TrafficModel.ExpectedResponseFields(want.Response).Select(f => (f.Name, f.Value)),
                        x.ResponseHeaders.Select(kv => (kv.Key, kv.Value)));
                    Assert.Equal(spec.TracedIsServer ? 1 : 2, x.Direction);
                    Assert.False(x.RequestCut || x.ResponseCut, where);
                }
            }
            var interims = scenario.Conns.Sum(c => c.Exchanges.Sum(x => x.Response.Interims.Length));
            Assert.True(h.TotalDrops == interims, $"{scenario}\nunexpected drops: {h.DropSummary}");
            Assert.Equal(0, h.Table.RetainedBytes);
        }
    }

    [Fact]
    public void The_akto_message_of_any_valid_exchange_is_json_of_strings_with_the_exact_bodies()
    {
        Prop.ForAll(TrafficModel.Arbitrary, scenario =>
        {
            using var h = new Harness();
            var spec = scenario.Conns[0];
            var conn = h.Open(10, spec.TracedIsServer);
            foreach (var (dir, bytes) in TrafficModel.Events(TrafficModel.Segments(spec, conn), spec.CutSeed, spec.MaxCut))
                h.Event(conn, dir, bytes);
            h.Close(conn);
            Assert.Equal(spec.Exchanges.Length, h.Exchanges.Count);
            for (var i = 0; i < h.Exchanges.Count; i++)
            {
                var m = h.Exchanges[i].Message;
                foreach (var p in m.EnumerateObject()) Assert.Equal(System.Text.Json.JsonValueKind.String, p.Value.ValueKind);
                Check(spec.Exchanges[i].Request.Body, m.GetProperty("requestPayload").GetString()!, h.Exchanges[i].AktoHeaders("requestHeaders"));
                Check(spec.Exchanges[i].Response.Body, m.GetProperty("responsePayload").GetString()!, h.Exchanges[i].AktoHeaders("responseHeaders"));
                Assert.Equal(spec.Exchanges[i].Request.Target, m.GetProperty("path").GetString());
            }
        }).Check(Runs(150));

        static void Check(byte[] sent, string payload, Dictionary<string, string> headers)
        {
            if (headers.TryGetValue("x-collector-body-encoding", out var enc))
            {
                Assert.Equal("base64", enc);
                Assert.Equal(sent, Convert.FromBase64String(payload));
            }
            else
            {
                Assert.Equal(sent, Encoding.UTF8.GetBytes(payload));
            }
        }
    }
}
