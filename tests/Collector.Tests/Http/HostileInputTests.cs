using System.Text;
using Collector.Events;
using FsCheck;
using FsCheck.Fluent;

namespace Collector.Tests.Http;

/// <summary>Malformed and hostile input: never an exception out of the engine, memory inside the
/// budget after every event, and what was lost is counted.</summary>
public sealed class HostileInputTests
{
    private const long Budget = 256 * 1024;

    private static Harness Small() => new(maxHeaderBytes: 2048, maxBodyBytes: 16 * 1024, budgetBytes: Budget, maxConnections: 16);

    private static void Feed(Harness h, TestConn c, StreamDirection d, byte[] bytes, int piece)
    {
        for (var at = 0; at < bytes.Length; at += piece)
        {
            h.Event(c, d, bytes.AsSpan(at, Math.Min(piece, bytes.Length - at)));
            Assert.InRange(h.Table.RetainedBytes, 0, Budget);
        }
    }

    [Fact]
    public void Random_bytes_never_throw_and_stay_in_the_budget()
    {
        var arb = Gen.Zip(Gen.Choose(1, 40), Gen.Choose(0, int.MaxValue)).ToArbitrary();
        Prop.ForAll(arb, t =>
        {
            var (connections, seed) = t;
            var r = new Random(seed);
            using var h = Small();
            var conns = Enumerable.Range(0, connections).Select(i => h.Open((uint)(10 + i), r.Next(2) == 0, sendOpen: r.Next(4) != 0)).ToArray();
            for (var i = 0; i < 300; i++)
            {
                var c = conns[r.Next(conns.Length)];
                var bytes = new byte[r.Next(1, r.Next(2) == 0 ? 64 : 20000)];
                r.NextBytes(bytes);
                if (bytes.Length >= 16 && r.Next(3) == 0) Encoding.ASCII.GetBytes("GET / HTTP/1.1\r\n").CopyTo(bytes, 0); // sometimes a plausible start
                if (r.Next(10) == 0) h.Gap(c, r.Next(2) == 0 ? StreamDirection.Egress : StreamDirection.Ingress, r.Next(1, 100000));
                h.Event(c, r.Next(2) == 0 ? StreamDirection.Egress : StreamDirection.Ingress, bytes);
                Assert.InRange(h.Table.RetainedBytes, 0, Budget);
            }
            h.Table.EndAll("shutdown");
            Assert.Equal(0, h.Table.RetainedBytes);
            Assert.True(h.DropsStartingWith("malformed_") > 0, h.DropSummary);
        }).Check(Config.QuickThrowOnFailure.WithMaxTest(60));
    }

    public static Action<string>? Log;

    /// <summary>Valid traffic with a share of its events lost (the kernel reports each as a gap).</summary>
    public static (Harness H, Dictionary<uint, ConnSpec> Specs) Replay(Scenario scenario, int seed, Func<Random, int> mutation, long budget)
    {
        var r = new Random(seed);
        var h = new Harness(budgetBytes: budget);
        var fd = 10u;
        var specs = new Dictionary<uint, ConnSpec>();
        var queues = new List<(TestConn Conn, Queue<(StreamDirection Dir, byte[] Bytes)> Events)>();
        foreach (var spec0 in scenario.Conns)
        {
            // unique targets, so that every emitted exchange names the one it claims to be
            var spec = spec0 with
            {
                Exchanges = spec0.Exchanges.Select((x, i) => x with { Request = x.Request with { Target = $"/x{i}" } }).ToArray(),
            };
            var conn = h.Open(fd, spec.TracedIsServer);
            specs[fd++] = spec;
            queues.Add((conn, new Queue<(StreamDirection, byte[])>(TrafficModel.Events(TrafficModel.Segments(spec, conn), spec.CutSeed, spec.MaxCut))));
        }
        while (queues.Any(q => q.Events.Count > 0))
        {
            var (conn, events) = queues[r.Next(queues.Count)];
            if (events.Count == 0) continue;
            var (dir, bytes) = events.Dequeue();
            switch (mutation(r))
            {
                case 0:
                    Log?.Invoke($"fd {conn.Fd} {dir} LOST {bytes.Length}");
                    h.Gap(conn, dir, bytes.Length); // the event is lost: a gap of its size
                    continue;
                case 1:
                    bytes = bytes.ToArray();
                    bytes[r.Next(bytes.Length)] ^= (byte)r.Next(1, 256); // a corrupted byte
                    break;
                case 2:
                    h.Event(conn, dir, Encoding.ASCII.GetBytes(r.Next(2) == 0 ? "garbage\r\n\r\n" : "HTTP/1.1 200 OK\r\n\r\n"));
                    break;
            }
            Log?.Invoke($"fd {conn.Fd} {dir} DATA {Convert.ToBase64String(bytes)}");
            h.Event(conn, dir, bytes);
            Assert.InRange(h.Table.RetainedBytes, 0, budget);
        }
        h.Table.EndAll("shutdown");
        Assert.Equal(0, h.Table.RetainedBytes);
        return (h, specs);
    }

    /// <summary>Clients that wait for each answer (every common client: curl, browsers, Go, Java,
    /// .NET, Python, node). A pipelining client that loses messages before it has shown that it
    /// pipelines is the one case the collector cannot pair provably (see Connection); once it has
    /// shown it, its losses are counted, never mispaired (GapTests).</summary>
    [Fact]
    public void With_lost_events_every_exchange_emitted_is_one_that_was_sent_and_a_holed_body_is_marked()
    {
        var sequential = TrafficModel.Scenarios.Select(s => s with { Conns = s.Conns.Select(c => c with { Pipelined = false }).ToArray() });
        var arb = Gen.Zip(sequential, Gen.Choose(0, int.MaxValue)).ToArbitrary();
        Prop.ForAll(arb, t =>
        {
            var (h, specs) = Replay(t.Item1, t.Item2, r => r.Next(8) == 0 ? 0 : -1, 64L << 20);
            using (h)
            {
                foreach (var x in h.Exchanges)
                {
                    var spec = specs[x.Connection.Fd];
                    var i = int.Parse(x.Target[2..]);
                    var want = spec.Exchanges[i];
                    Assert.Equal(want.Request.Method, x.Method);
                    // paired with its own response, never a neighbour's
                    Assert.Equal(want.Response.Status, x.Status);
                    // (trailers after a whole body may be cut by a gap: the header block may not)
                    var fields = TrafficModel.ExpectedResponseFields(want.Response with { Trailers = [] });
                    Assert.Equal(fields.Select(f => f.Name + f.Value), x.ResponseHeaders.Select(kv => kv.Key + kv.Value).Take(fields.Length));
                    // whole when unmarked; when marked, only bytes that were sent, from the start
                    CheckBody(want.Request.Body, x.RequestBody, x.RequestCut);
                    CheckBody(want.Response.Body, x.ResponseBody, x.ResponseCut);
                }
            }
        }).Check(Config.QuickThrowOnFailure.WithMaxTest(250));

        static void CheckBody(byte[] sent, byte[] got, bool cut)
        {
            if (!cut) Assert.Equal(sent, got);
            else Assert.True(got.Length <= sent.Length && sent.AsSpan(0, got.Length).SequenceEqual(got), "a cut body is a prefix of the body sent");
        }
    }

    [Fact]
    public void Corrupted_and_injected_bytes_never_throw_and_stay_in_the_budget()
    {
        var arb = Gen.Zip(TrafficModel.Scenarios, Gen.Choose(0, int.MaxValue)).ToArbitrary();
        Prop.ForAll(arb, t =>
        {
            var (h, _) = Replay(t.Item1, t.Item2, r => r.Next(10), Budget);
            h.Dispose();
        }).Check(Config.QuickThrowOnFailure.WithMaxTest(150));
    }

    [Fact]
    public void An_absurd_content_length_keeps_memory_at_the_body_cap()
    {
        using var h = Small();
        var c = h.Open(5);
        h.Request(c, "POST /absurd HTTP/1.1\r\nHost: a\r\nContent-Length: 999999999999999999\r\n\r\n");
        Feed(h, c, c.RequestDirection, new byte[4 << 20], 16384);
        Assert.InRange(h.Table.RetainedBytes, 0, 16 * 1024 + 4096);
        h.Close(c);
        Assert.Equal(0, h.Table.RetainedBytes);
        Assert.Equal(1, h.Drops("request_without_response"));
    }

    [Fact]
    public void Endless_headers_are_skipped_as_they_arrive()
    {
        using var h = Small();
        var c = h.Open(5);
        h.Request(c, "GET /endless HTTP/1.1\r\n");
        var lines = Encoding.ASCII.GetBytes(string.Concat(Enumerable.Range(0, 100_000).Select(i => $"X-{i}: {i}\r\n")));
        Feed(h, c, c.RequestDirection, lines, 16384);
        Assert.InRange(h.Table.RetainedBytes, 0, 4096);
        h.Close(c);
        Assert.Equal(1, h.Drops("request_header_too_large"));
        Assert.Equal(0, h.Table.RetainedBytes);
    }

    [Fact]
    public void Endless_chunks_keep_memory_at_the_body_cap()
    {
        using var h = Small();
        var c = h.Open(5);
        h.Request(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        h.Response(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
        var chunks = Encoding.ASCII.GetBytes(string.Concat(Enumerable.Repeat("1;x=y\r\nz\r\n", 200_000)));
        Feed(h, c, c.ResponseDirection, chunks, 16384);
        Assert.InRange(h.Table.RetainedBytes, 0, 16 * 1024 + 4096);
        h.Close(c);
        var x = Assert.Single(h.Exchanges);
        Assert.True(x.ResponseCut);
        Assert.Equal(16 * 1024, x.ResponseBody.Length);
    }

    [Theory]
    [InlineData("-1")]
    [InlineData("ffffffffffffffffffffffff")]
    [InlineData("+5")]
    [InlineData(" 5")]
    [InlineData("5 5")]
    public void Negative_and_overflowing_chunk_sizes_are_malformed(string size)
    {
        using var h = Small();
        var c = h.Open(5);
        h.Request(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        h.Response(c, $"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{size}\r\nhello\r\n0\r\n\r\n");
        Assert.Empty(h.Exchanges);
        Assert.Equal(1, h.Drops("malformed_invalid_chunk_size"));
    }

    [Fact]
    public void A_flood_of_unanswered_requests_is_bounded_and_counted()
    {
        using var h = Small();
        var c = h.Open(5);
        var req = Encoding.ASCII.GetBytes(string.Concat(Enumerable.Repeat("GET /flood HTTP/1.1\r\nHost: a\r\n\r\n", 5000)));
        Feed(h, c, c.RequestDirection, req, 8192);
        Assert.Equal(1, h.Drops("too_many_pending_requests"));
        Assert.InRange(h.Table.RetainedBytes, 0, 128 * 1024);
        h.Response(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        h.Close(c);
        Assert.Empty(h.Exchanges);
        Assert.Equal(5000, h.DropsStartingWith("request_pairing_lost"));
        Assert.Equal(0, h.Table.RetainedBytes);
    }

    [Fact]
    public void More_connections_than_allowed_evict_the_oldest_and_count_it()
    {
        using var h = Small();
        for (var i = 0; i < 1000; i++)
        {
            var c = h.Open((uint)(100 + i));
            h.Request(c, "GET /many HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n0123456789");
            Assert.InRange(h.Table.Count, 0, 16);
            Assert.InRange(h.Table.RetainedBytes, 0, Budget);
        }
        Assert.Equal(1000 - 16, h.Metrics.ConnectionsEnded["evicted_max_connections"].Value);
    }
}
