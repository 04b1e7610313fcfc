using System.Diagnostics;
using System.Text;
using Collector.Http;

namespace Collector.Tests.Http;

/// <summary>TRAFFIC_INACTIVITY_THRESHOLD, TRAFFIC_MAX_ACTIVE_CONN, TRAFFIC_BUFFER_THRESHOLD,
/// HTTP_MAX_HEADER_BYTES, HTTP_MAX_BODY_BYTES, and memory returned when connections end.</summary>
public sealed class BoundsTests
{
    private static long Ms(double seconds) => (long)(seconds * 1000);

    [Fact]
    public void Idle_connections_are_flushed_and_forgotten_active_ones_stay()
    {
        using var h = new Harness(inactivity: TimeSpan.FromSeconds(30));
        var idle = h.Open(5);
        h.Request(idle, "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n");
        h.Response(idle, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        var start = Environment.TickCount64;
        h.Table.Sweep(start + Ms(10));
        Assert.Equal(1, h.Table.Count);
        Thread.Sleep(100); // the activity clock counts milliseconds
        var active = h.Open(6);
        h.Request(active, "GET /2 HTTP/1.1\r\nHost: a\r\n\r\n");
        // 30 s after the first connection's last event, but not after the second's
        h.Table.Sweep(start + Ms(30) + Ms(0.05));
        Assert.Equal(1, h.Table.Count);
        Assert.Equal(1, h.Metrics.ConnectionsEnded["idle"].Value);
        h.Response(active, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        Assert.Equal(2, h.Exchanges.Count);
    }

    [Fact]
    public void When_the_table_is_full_the_least_recently_active_connection_makes_room()
    {
        using var h = new Harness(maxConnections: 3);
        var a = h.Open(5);
        var b = h.Open(6);
        var c = h.Open(7);
        h.Request(b, "GET /b HTTP/1.1\r\nHost: a\r\n\r\n"); // b waits for its response
        h.Request(a, "GET /a HTTP/1.1\r\nHost: a\r\n\r\n"); // a is now more recent than b; c is the oldest... 
        h.Request(c, "GET /c HTTP/1.1\r\nHost: a\r\n\r\n"); // ... until c is touched too: b is the least recent
        var d = h.Open(8);
        Assert.Equal(3, h.Table.Count);
        Assert.Equal(1, h.Metrics.ConnectionsEnded["evicted_max_connections"].Value);
        Assert.Equal(1, h.Drops("request_without_response_evicted_max_connections"));
        h.Response(a, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na");
        h.Response(c, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nc");
        h.Request(d, "GET /d HTTP/1.1\r\nHost: a\r\n\r\n");
        h.Response(d, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nd");
        Assert.Equal(["/a", "/c", "/d"], h.Exchanges.Select(x => x.Target).Order());
        // b's late response belongs to a connection that was forgotten: it cannot be paired
        h.Response(b, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb");
        Assert.Equal(3, h.Exchanges.Count);
        Assert.Equal(2, h.Metrics.ConnectionsEnded["evicted_max_connections"].Value); // b came back and pushed out the oldest
    }

    [Fact]
    public void The_buffer_budget_is_enforced_as_bytes_arrive_oldest_first()
    {
        const long budget = 64 * 1024;
        using var h = new Harness(budgetBytes: budget);
        var conns = Enumerable.Range(0, 8).Select(i => h.Open((uint)(10 + i))).ToArray();
        foreach (var c in conns)
            h.Request(c, "GET /big HTTP/1.1\r\nHost: a\r\n\r\n");
        var chunk = new string('x', 4000);
        foreach (var c in conns)
            h.Response(c, $"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {5 * chunk.Length}\r\n\r\n");
        for (var round = 0; round < 5; round++)
        {
            foreach (var c in conns)
            {
                h.Response(c, chunk);
                Assert.InRange(h.Table.RetainedBytes, 0, budget);
            }
        }
        Assert.True(h.Metrics.ShedBytes.Value > 0);
        // what was shed is counted (with its request), what was not is whole
        Assert.NotEmpty(h.Exchanges);
        Assert.All(h.Exchanges, x => Assert.Equal(5 * chunk.Length, x.ResponseBody.Length));
        Assert.Equal(8, h.Exchanges.Count + h.Drops("request_shed"));
        // shedding keeps the parsers in step: the next exchanges on every connection are whole
        foreach (var c in conns)
        {
            h.Request(c, "GET /after HTTP/1.1\r\nHost: a\r\n\r\n");
            h.Response(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nafter");
        }
        Assert.Equal(8, h.Exchanges.Count(x => x.Target == "/after" && x.ResponseText == "after"));
        foreach (var c in conns) h.Close(c);
        Assert.Equal(0, h.Table.RetainedBytes);
    }

    [Fact]
    public void Shedding_takes_the_least_recently_active_connection_first()
    {
        const long budget = 48 * 1024;
        using var h = new Harness(budgetBytes: budget);
        var a = h.Open(5);
        var b = h.Open(6);
        var c = h.Open(7);
        var part = new string('p', 15000);
        foreach (var conn in new[] { a, b, c })
        {
            h.Request(conn, "GET /x HTTP/1.1\r\nHost: a\r\n\r\n");
            h.Response(conn, $"HTTP/1.1 200 OK\r\nContent-Length: {part.Length + 10}\r\n\r\n{part}");
            Assert.InRange(h.Table.RetainedBytes, 0, budget);
        }
        Assert.True(h.Metrics.ShedBytes.Value > 0);
        foreach (var conn in new[] { a, b, c }) h.Response(conn, "0123456789");
        Assert.Equal([6u, 7u], h.Exchanges.Select(x => x.Connection.Fd));
        Assert.All(h.Exchanges, x => Assert.Equal(part + "0123456789", x.ResponseText));
        Assert.Equal(1, h.Drops("request_shed")); // the oldest exchange: both its messages were shed
    }

    [Fact]
    public void A_header_block_over_the_limit_is_counted_and_skipped_not_buffered()
    {
        const int limit = 4096;
        using var h = new Harness(maxHeaderBytes: limit);
        var c = h.Open(5);
        var big = new StringBuilder("POST /huge HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n");
        for (var i = 0; i < 200; i++) big.Append($"X-Filler-{i}: {new string('v', 60)}\r\n");
        big.Append("\r\nhello");
        var bytes = Encoding.ASCII.GetBytes(big.ToString());
        for (var at = 0; at < bytes.Length; at += 1000)
        {
            h.Request(c, bytes.AsSpan(at, Math.Min(1000, bytes.Length - at)).ToArray());
            Assert.InRange(h.Table.RetainedBytes, 0, 2 * limit);
        }
        h.Response(c, "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\n\r\n");
        // the framing was followed: the next request on the connection is found
        h.Request(c, "GET /small HTTP/1.1\r\nHost: a\r\n\r\n");
        h.Response(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        var x = Assert.Single(h.Exchanges);
        Assert.Equal("/small", x.Target);
        Assert.Equal(1, h.Drops("request_header_too_large"));
        Assert.Equal(0, h.DropsStartingWith("sync_lost"));
    }

    [Fact]
    public void An_endless_header_line_is_skipped_as_it_arrives()
    {
        const int limit = 8192;
        using var h = new Harness(maxHeaderBytes: limit);
        var c = h.Open(5);
        h.Request(c, "GET /endless HTTP/1.1\r\nHost: a\r\nCookie: ");
        var filler = Encoding.ASCII.GetBytes(new string('c', 16384));
        for (var i = 0; i < 64; i++) // 1 MiB of one header line
        {
            h.Request(c, filler);
            Assert.InRange(h.Table.RetainedBytes, 0, 2 * limit);
        }
        h.Request(c, "\r\nAccept: */*\r\n\r\n");
        h.Response(c, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        h.Request(c, "GET /ok HTTP/1.1\r\nHost: a\r\n\r\n");
        h.Response(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        Assert.Equal("/ok", Assert.Single(h.Exchanges).Target);
        Assert.Equal(1, h.Drops("request_header_too_large"));
    }

    [Fact]
    public void A_start_line_over_the_limit_is_malformed()
    {
        using var h = new Harness(maxHeaderBytes: 1024);
        var c = h.Open(5);
        h.Request(c, "GET /" + new string('a', 3000) + " HTTP/1.1\r\nHost: a\r\n\r\n");
        Assert.InRange(h.Table.RetainedBytes, 0, 0);
        Assert.Equal(1, h.Drops("malformed_start_line_too_long"));
    }

    [Fact]
    public void A_body_over_the_cap_is_cut_and_marked_and_a_cut_json_body_is_withheld()
    {
        using var h = new Harness(maxBodyBytes: 1000);
        var c = h.Open(5);
        var text = string.Concat(Enumerable.Repeat("0123456789", 500));
        h.Request(c, "GET /text HTTP/1.1\r\nHost: a\r\n\r\n");
        h.Response(c, $"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {text.Length}\r\n\r\n{text}");
        var json = "[" + string.Join(",", Enumerable.Range(0, 1000)) + "]";
        h.Request(c, "GET /json HTTP/1.1\r\nHost: a\r\n\r\n");
        h.Response(c, $"HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {json.Length}\r\n\r\n{json}");
        Assert.Equal(2, h.Exchanges.Count);
        var t = h.Exchanges[0];
        Assert.Equal(text[..1000], t.Akto("responsePayload"));
        Assert.Equal("cap; kept=1000; wire=5000", t.AktoHeaders("responseHeaders")["x-collector-body-truncated"]);
        var j = h.Exchanges[1];
        Assert.Equal("", j.Akto("responsePayload"));
        Assert.Equal($"cap; kept=0; wire={json.Length}; json body withheld", j.AktoHeaders("responseHeaders")["x-collector-body-truncated"]);
        Assert.Equal(2, h.Metrics.BodiesCut["cap"].Value);
    }

    [Fact]
    public void A_connections_memory_is_returned_when_it_ends()
    {
        using var h = new Harness();
        var conns = Enumerable.Range(0, 50).Select(i => h.Open((uint)(100 + i))).ToArray();
        var body = new string('b', 20000);
        foreach (var c in conns)
        {
            h.Request(c, $"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: {body.Length}\r\n\r\n{body[..5000]}");
            h.Response(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n0123");
        }
        Assert.True(h.Table.RetainedBytes > 50 * 5000);
        for (var i = 0; i < conns.Length; i++)
        {
            if (i % 3 == 0) h.Close(conns[i]);
        }
        h.Table.OnExit(100, h.Now += 1000); // the process ends: the kernel closes its fds without close()
        Assert.Equal(0, h.Table.Count);
        Assert.Equal(0, h.Table.RetainedBytes);
        Assert.Equal(0, h.Metrics.BufferedBytes);
        // both messages were cut by the end: handed on, each marked
        Assert.Equal(50, h.Exchanges.Count);
        Assert.All(h.Exchanges, x => Assert.True(x.RequestCut && x.ResponseCut));
        Assert.All(h.Exchanges, x => Assert.StartsWith("incomplete; kept=5000; wire=5000", x.AktoHeaders("requestHeaders")["x-collector-body-truncated"]));
        Assert.True(BufferPool.IdleBytes <= BufferPool.MaxIdleBytes);
    }
}
