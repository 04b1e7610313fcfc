using System.Text;
using Collector.Events;

namespace Collector.Tests.Http;

/// <summary>The kernel's positions show exactly where bytes are missing; reassembly never presents a
/// holed body as whole, counts what a gap cut, and resumes at a boundary it can prove.</summary>
public sealed class GapTests
{
    [Fact]
    public void A_body_with_a_hole_is_marked_never_whole_and_the_stream_stays_in_step()
    {
        using var h = new Harness();
        var c = h.Open(5);
        h.Request(c, "GET /file HTTP/1.1\r\nHost: a\r\n\r\n");
        h.Response(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 30\r\n\r\n0123456789");
        h.Gap(c, c.ResponseDirection, 10);
        h.Response(c, "ABCDEFGHIJ");
        h.Request(c, "GET /next HTTP/1.1\r\nHost: a\r\n\r\n");
        h.Response(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext");
        Assert.Equal(2, h.Exchanges.Count);
        var holed = h.Exchanges[0];
        Assert.True(holed.ResponseCut);
        Assert.Equal("0123456789", holed.Akto("responsePayload")); // only what came before the hole
        Assert.Equal("gap; kept=10; wire=30", holed.AktoHeaders("responseHeaders")["x-collector-body-truncated"]);
        Assert.Equal("next", h.Exchanges[1].ResponseText);
        Assert.Equal(10, h.Metrics.GapBytes.Value);
        Assert.Equal(1, h.Metrics.BodiesCut["gap"].Value);
        Assert.Equal(0, h.DropsStartingWith("sync_lost"));
    }

    [Fact]
    public void A_json_body_with_a_hole_is_withheld()
    {
        using var h = new Harness();
        var c = h.Open(5);
        h.Request(c, "POST /api HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 20\r\n\r\n{\"a\":");
        h.Gap(c, c.RequestDirection, 10);
        h.Request(c, "1234}");
        h.Response(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        var x = Assert.Single(h.Exchanges);
        Assert.Equal("", x.Akto("requestPayload"));
        Assert.Equal("gap; kept=0; wire=20; json body withheld", x.AktoHeaders("requestHeaders")["x-collector-body-truncated"]);
    }

    [Fact]
    public void A_hole_that_ends_exactly_at_the_end_of_a_body_keeps_the_stream_in_step()
    {
        using var h = new Harness();
        var c = h.Open(5);
        h.Request(c, "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n");
        h.Response(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc");
        h.Gap(c, c.ResponseDirection, 97);
        h.Request(c, "GET /2 HTTP/1.1\r\nHost: a\r\n\r\n");
        h.Response(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n#2");
        Assert.Equal(["/1", "/2"], h.Exchanges.Select(x => x.Target));
        Assert.True(h.Exchanges[0].ResponseCut);
        Assert.Equal("#2", h.Exchanges[1].ResponseText);
        Assert.Equal(0, h.DropsStartingWith("sync_lost"));
    }

    [Fact]
    public void A_message_cut_by_a_gap_is_counted_and_parsing_resumes_at_the_next_message()
    {
        using var h = new Harness();
        var c = h.Open(5);
        h.Request(c, "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n");
        h.Response(c, "HTTP/1.1 200 OK\r\nContent-Le");
        h.Gap(c, c.ResponseDirection, 500); // the rest of response 1 and what followed
        h.Request(c, "GET /2 HTTP/1.1\r\nHost: a\r\n\r\n");
        // /2 was sent before the hole showed: its answer may have been in it, so this one cannot be
        // proven to be /2's and is not paired
        h.Response(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n#2");
        h.Request(c, "GET /3 HTTP/1.1\r\nHost: a\r\n\r\n");
        h.Response(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n#3");
        var x = Assert.Single(h.Exchanges);
        Assert.Equal("/3", x.Target);
        Assert.Equal("#3", x.ResponseText);
        Assert.Equal(1, h.Drops("sync_lost_gap"));
        Assert.Equal(1, h.Drops("response_gap")); // response 1 was seen starting: it went with request 1
        Assert.Equal(1, h.Drops("response_lost")); // /2
        Assert.Equal(1, h.Drops("response_without_request")); // #2
        Assert.Equal(500, h.Metrics.GapBytes.Value);
    }

    [Fact]
    public void After_a_gap_bytes_inside_a_body_are_never_taken_for_a_message()
    {
        using var h = new Harness();
        var c = h.Open(5);
        h.Request(c, "GET /doc HTTP/1.1\r\nHost: a\r\n\r\n");
        h.Response(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n40\r\nAn HTTP tutorial:\n");
        h.Gap(c, c.ResponseDirection, 100); // past the chunk's end: the chunk framing is lost here
        // the rest of the body quotes HTTP messages, some of them at the start of a line
        h.Response(c, "...\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc\r\n0\r\n\r\n");
        h.Request(c, "GET /after HTTP/1.1\r\nHost: a\r\n\r\n");
        h.Response(c, "HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n\r\nnope");
        var x = Assert.Single(h.Exchanges);
        Assert.Equal("/after", x.Target);
        Assert.Equal(404, x.Status);
        Assert.Equal("nope", x.ResponseText);
        Assert.True(h.Metrics.ResyncSkippedBytes.Value > 0);
        Assert.Equal(1, h.Drops("response_gap"));
    }

    [Fact]
    public void A_gap_at_a_message_boundary_resynchronizes_at_the_next_event()
    {
        using var h = new Harness();
        var c = h.Open(5);
        h.Request(c, "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n");
        h.Response(c, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n1");
        h.Gap(c, c.RequestDirection, 42); // request /2 lost entirely
        h.Response(c, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n2"); // its response: no request to pair with
        h.Request(c, "GET /3 HTTP/1.1\r\nHost: a\r\n\r\n");
        h.Response(c, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n3");
        Assert.Equal(["/1", "/3"], h.Exchanges.Select(x => x.Target));
        Assert.Equal(["1", "3"], h.Exchanges.Select(x => x.ResponseText));
        Assert.Equal(1, h.Drops("response_without_request"));
        Assert.Equal(1, h.Drops("sync_lost_gap"));
    }

    [Fact]
    public void Lost_responses_do_not_shift_pairing_on_a_connection_that_waits_for_answers()
    {
        using var h = new Harness();
        var c = h.Open(5);
        h.Request(c, "GET /0 HTTP/1.1\r\nHost: a\r\n\r\n");
        h.Response(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n#0");
        h.Request(c, "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"); // the client waited for #0: it waits for answers
        h.Gap(c, c.ResponseDirection, 60); // response 1 lost whole
        h.Request(c, "GET /2 HTTP/1.1\r\nHost: a\r\n\r\n");
        // the gap shows with the next response: /1 and /2 were both waiting, and which of them this
        // answers cannot be proven (/2's own request could have been lost too): neither is paired
        h.Response(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n#2");
        h.Request(c, "GET /3 HTTP/1.1\r\nHost: a\r\n\r\n");
        h.Response(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n#3");
        Assert.Equal(["/0", "/3"], h.Exchanges.Select(x => x.Target));
        Assert.Equal(["#0", "#3"], h.Exchanges.Select(x => x.ResponseText));
        Assert.Equal(2, h.Drops("response_lost"));
        Assert.Equal(1, h.Drops("response_without_request"));
        Assert.Equal(0, h.Drops("pipelined_pairing_lost"));
    }

    [Fact]
    public void An_answer_to_a_request_lost_unseen_is_told_apart_by_the_clock()
    {
        using var h = new Harness();
        var c = h.Open(5);
        h.Request(c, "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n");
        h.Response(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n#1");
        h.Gap(c, c.RequestDirection, 30); // request /2 lost whole: nothing shows it yet
        h.Response(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n#2");
        h.Request(c, "GET /3 HTTP/1.1\r\nHost: a\r\n\r\n");
        h.Response(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n#3");
        Assert.Equal(["/1", "/3"], h.Exchanges.Select(x => x.Target));
        Assert.Equal(["#1", "#3"], h.Exchanges.Select(x => x.ResponseText));
        Assert.Equal(1, h.Drops("response_without_request"));
    }

    [Fact]
    public void A_pipelined_connection_that_loses_messages_is_counted_not_mispaired()
    {
        using var h = new Harness();
        var c = h.Open(5);
        h.Request(c, "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n");
        h.Response(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n#1");
        h.Request(c, "GET /3 HTTP/1.1\r\nHost: a\r\n\r\nGET /4 HTTP/1.1\r\nHost: a\r\n\r\n");
        h.Gap(c, c.ResponseDirection, 40); // response 2 lost
        h.Response(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n#3");
        h.Response(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n#4");
        var x = Assert.Single(h.Exchanges);
        Assert.Equal("/1", x.Target);
        Assert.Equal(1, h.Drops("pipelined_pairing_lost"));
        h.Close(c);
        Assert.Equal(3, h.DropsStartingWith("request_pairing_lost") + h.Drops("response_lost"));
        Assert.Equal(0, h.Table.RetainedBytes);
    }

    [Fact]
    public void Overlapping_positions_keep_only_the_new_bytes()
    {
        using var h = new Harness();
        var c = h.Open(5);
        var request = Encoding.ASCII.GetBytes("GET /overlap HTTP/1.1\r\nHost: a\r\n\r\n");
        h.Request(c, request.AsSpan(0, 20).ToArray());
        // the kernel re-sends from position 10 (a retried read): the first 10 bytes are known
        h.Gap(c, c.RequestDirection, -10);
        h.Request(c, request.AsSpan(10).ToArray());
        h.Response(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        Assert.Equal("/overlap", Assert.Single(h.Exchanges).Target);
    }

    [Fact]
    public void Requests_without_a_response_are_counted_at_close_and_idle_and_not_emitted()
    {
        using var h = new Harness(inactivity: TimeSpan.FromSeconds(2));
        var closed = h.Open(5);
        h.Request(closed, "GET /never HTTP/1.1\r\nHost: a\r\n\r\n");
        h.Close(closed);
        var idle = h.Open(6);
        h.Request(idle, "GET /never-idle HTTP/1.1\r\nHost: a\r\n\r\n");
        h.Table.Sweep(Environment.TickCount64 + 10_000);
        Assert.Empty(h.Exchanges);
        Assert.Equal(1, h.Drops("request_without_response"));
        Assert.Equal(1, h.Drops("request_without_response_idle"));
        Assert.Equal(0, h.Table.Count);
        Assert.Equal(0, h.Table.RetainedBytes);
    }

    [Fact]
    public void A_response_cut_by_close_is_emitted_marked_and_a_request_cut_by_close_is_counted()
    {
        using var h = new Harness();
        var c = h.Open(5);
        h.Request(c, "GET /cut HTTP/1.1\r\nHost: a\r\n\r\n");
        h.Response(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial");
        h.Request(c, "POST /half HTTP/1.1\r\nHost: a\r\nContent-Len");
        h.Close(c);
        var x = Assert.Single(h.Exchanges);
        Assert.Equal("partial", x.Akto("responsePayload"));
        Assert.Equal("incomplete; kept=7; wire=7", x.AktoHeaders("responseHeaders")["x-collector-body-truncated"]);
        Assert.Equal(1, h.Drops("request_incomplete_at_end"));
        Assert.Equal(1, h.Metrics.BodiesCut["incomplete"].Value);
    }

    [Fact]
    public void Tls_plaintext_replaces_the_syscall_view_and_ciphertext_is_never_parsed()
    {
        using var h = new Harness();
        var c = h.Open(5);
        h.Event(c, StreamDirection.Ingress, new byte[] { 0x16, 0x03, 0x01, 0, 5, 1, 2, 3, 4, 5 });
        h.Event(c, StreamDirection.Ingress, Encoding.ASCII.GetBytes("GET /tls HTTP/1.1\r\nHost: a\r\n\r\n"), EventSource.OpenSsl);
        h.Event(c, StreamDirection.Egress, Encoding.ASCII.GetBytes("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"), EventSource.OpenSsl);
        h.Event(c, StreamDirection.Egress, new byte[] { 0x17, 0x03, 0x03, 0, 2, 9, 9 });
        var x = Assert.Single(h.Exchanges);
        Assert.Equal("/tls", x.Target);
        Assert.Equal("ok", x.ResponseText);
        Assert.Equal(1, h.Drops("tls_ciphertext_ignored"));
    }

    /// <summary>The exchange in flight when capture started (its first bytes left out, see
    /// RingBufferReader.CaptureFrom) is not counted as a loss of sync: the connection is joined
    /// mid-stream, as one opened before the collector is, and the next exchange comes out whole.
    /// The same bytes lost on a connection that was already in sync are a counted loss.</summary>
    [Fact]
    public void A_connection_whose_first_bytes_came_before_the_capture_start_is_joined_not_counted_as_out_of_sync()
    {
        using var h = new Harness();
        var response = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789";
        var after = "GET /after HTTP/1.1\r\nHost: a\r\n\r\n";

        var joined = h.Open(5); // accepted before the capture start: its open event is kept
        h.LeftOutBeforeCapture(joined, joined.RequestDirection, 40);
        h.LeftOutBeforeCapture(joined, joined.ResponseDirection, 20);
        h.Response(joined, response[20..]); // the in-flight response's tail
        h.Request(joined, after);
        h.Response(joined, response);
        Assert.Equal(["/after"], h.Exchanges.Select(e => e.Akto("path")));
        Assert.Equal(0, h.TotalDrops);

        var inSync = h.Open(6);
        h.Request(inSync, "GET /before HTTP/1.1\r\nHost: a\r\n\r\n");
        h.Gap(inSync, inSync.ResponseDirection, 20);
        h.Response(inSync, response[20..]);
        Assert.True(h.TotalDrops > 0, "a gap on a connection in sync is a counted loss");
    }
}
