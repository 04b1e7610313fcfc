using System.Text;
using Collector.Events;

namespace Collector.Tests.Http;

/// <summary>Messages and framing (issue 2's parser tests and issue 3's message list), fed through the
/// connection table as kernel events.</summary>
public sealed class ParserTests
{
    [Fact]
    public void Request_and_response_with_content_length()
    {
        using var h = new Harness();
        var c = h.Open(5);
        h.Request(c, "POST /api/users?id=4 HTTP/1.1\r\nHost: api.local\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n{\"a\":1}");
        h.Response(c, "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n{\"id\":12345}");
        var x = Assert.Single(h.Exchanges);
        Assert.Equal(1, x.Direction);
        Assert.Equal("POST", x.Method);
        Assert.Equal("/api/users?id=4", x.Target);
        Assert.Equal("HTTP/1.1", x.Version);
        Assert.Equal(201, x.Status);
        Assert.Equal("Created", x.Reason);
        Assert.Equal("{\"a\":1}", x.RequestText);
        Assert.Equal("{\"id\":12345}", x.ResponseText);
        Assert.Equal("201 Created", x.Akto("status"));
        Assert.Equal("201", x.Akto("statusCode"));
        Assert.Equal("{\"a\":1}", x.Akto("requestPayload"));
        Assert.Equal("{\"id\":12345}", x.Akto("responsePayload"));
        Assert.Equal("api.local", x.AktoHeaders("requestHeaders")["host"]);
        Assert.Equal(0, h.TotalDrops);
    }

    [Fact]
    public void Chunked_response_is_dechunked()
    {
        using var h = new Harness();
        var c = h.Open(5);
        h.Request(c, "GET /stream HTTP/1.1\r\nHost: a\r\n\r\n");
        h.Response(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\n\r\n");
        var x = Assert.Single(h.Exchanges);
        Assert.Equal("hello world", x.ResponseText);
        Assert.False(x.ResponseCut);
    }

    [Fact]
    public void Chunked_with_extensions_trailers_and_a_chunked_request()
    {
        using var h = new Harness();
        var c = h.Open(5);
        h.Request(c, "PUT /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n" +
                     "3;name=\"va;lue\"\r\nabc\r\n00000000000000000003 ; ext\r\ndef\r\n0;last\r\nX-Checksum: 99\r\n\r\n");
        h.Response(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: Grpc-Status\r\n\r\n" +
                      "A\r\n0123456789\r\n0\r\nGrpc-Status: 0\r\nGrpc-Message: fine\r\n\r\n");
        var x = Assert.Single(h.Exchanges);
        Assert.Equal("abcdef", x.RequestText);
        Assert.Equal("0123456789", x.ResponseText);
        Assert.Contains(x.RequestHeaders, kv => kv.Key == "X-Checksum" && kv.Value == "99");
        Assert.Contains(x.ResponseHeaders, kv => kv.Key == "Grpc-Status" && kv.Value == "0");
        Assert.Equal("fine", x.AktoHeaders("responseHeaders")["grpc-message"]);
        Assert.Equal(0, h.TotalDrops);
    }

    [Fact]
    public void Keep_alive_three_exchanges_on_one_connection()
    {
        using var h = new Harness();
        var c = h.Open(5);
        for (var i = 1; i <= 3; i++)
        {
            h.Request(c, $"GET /item/{i} HTTP/1.1\r\nHost: a\r\n\r\n");
            var body = new string((char)('a' + i), i * 10);
            h.Response(c, $"HTTP/1.1 200 OK\r\nContent-Length: {body.Length}\r\n\r\n{body}");
        }
        Assert.Equal(3, h.Exchanges.Count);
        for (var i = 1; i <= 3; i++)
        {
            Assert.Equal($"/item/{i}", h.Exchanges[i - 1].Target);
            Assert.Equal(new string((char)('a' + i), i * 10), h.Exchanges[i - 1].ResponseText);
        }
        Assert.All(h.Exchanges, x => Assert.Equal(h.Exchanges[0].Connection, x.Connection));
    }

    [Fact]
    public void Body_split_across_many_events_and_every_line_cut_in_the_middle()
    {
        using var h = new Harness();
        var c = h.Open(5);
        var body = string.Concat(Enumerable.Range(0, 500).Select(i => $"line {i};"));
        var request = Harness.Bytes($"POST /big HTTP/1.1\r\nHost: example\r\nContent-Length: {body.Length}\r\n\r\n{body}");
        // one byte per event for the head, then uneven pieces
        h.Events(c, c.RequestDirection, request, Enumerable.Repeat(1, 60).Concat([7, 13, 1, 1000, 3, 2000]).ToArray());
        var response = Harness.Bytes("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" +
                                     string.Concat(body.Chunk(97).Select(ch => $"{ch.Length:x}\r\n{new string(ch)}\r\n")) + "0\r\n\r\n");
        h.Events(c, c.ResponseDirection, response, Enumerable.Range(1, 200).Select(i => i % 17 + 1).ToArray());
        var x = Assert.Single(h.Exchanges);
        Assert.Equal(body, x.RequestText);
        Assert.Equal(body, x.ResponseText);
        Assert.Equal("example", x.AktoHeaders("requestHeaders")["host"]);
        Assert.Equal(0, h.TotalDrops);
        h.Close(c);
        Assert.Equal(0, h.Table.RetainedBytes);
    }

    [Theory]
    [InlineData("PROPFIND")]
    [InlineData("M-SEARCH")]
    [InlineData("PURGE")]
    [InlineData("x_custom.method~1")]
    [InlineData("get")]
    public void Any_method_token_is_a_method(string method)
    {
        using var h = new Harness();
        var c = h.Open(5);
        h.Request(c, $"{method} /r HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi");
        h.Response(c, "HTTP/1.1 207 Multi-Status\r\nContent-Length: 0\r\n\r\n");
        var x = Assert.Single(h.Exchanges);
        Assert.Equal(method, x.Method);
        Assert.Equal(method, x.Akto("method"));
        Assert.Equal("hi", x.RequestText);
    }

    [Fact]
    public void Not_a_method_token_is_malformed_and_counted()
    {
        using var h = new Harness();
        var c = h.Open(5);
        h.Request(c, "GE(T /r HTTP/1.1\r\nHost: a\r\n\r\n");
        h.Response(c, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        Assert.Empty(h.Exchanges);
        Assert.Equal(1, h.Drops("malformed_invalid_request_line"));
        Assert.Equal(1, h.Drops("response_without_request"));
    }

    [Fact]
    public void Every_request_target_form()
    {
        using var h = new Harness();
        var origin = h.Open(5);
        h.Request(origin, "GET /where?q=now&x=%20 HTTP/1.1\r\nHost: origin.example\r\n\r\n");
        h.Response(origin, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\no");

        // absolute-form (to a proxy), no Host field: the authority stands in for it
        var absolute = h.Open(6, tracedIsServer: false);
        h.Request(absolute, "GET http://absolute.example:8080/p?q=1 HTTP/1.1\r\nUser-Agent: t\r\n\r\n");
        h.Response(absolute, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na");

        // asterisk-form
        var asterisk = h.Open(7);
        h.Request(asterisk, "OPTIONS * HTTP/1.1\r\nHost: star.example\r\n\r\n");
        h.Response(asterisk, "HTTP/1.1 204 No Content\r\nAllow: GET, OPTIONS\r\n\r\n");

        // authority-form (CONNECT): the tunnel's bytes are not HTTP
        var connect = h.Open(8, tracedIsServer: false);
        h.Request(connect, "CONNECT tunnel.example:443 HTTP/1.1\r\n\r\n");
        h.Response(connect, "HTTP/1.1 200 Connection Established\r\n\r\n");
        h.Request(connect, new byte[] { 0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03 });
        h.Response(connect, new byte[] { 0x16, 0x03, 0x03, 0x00, 0x7a, 0x02, 0x00 });

        Assert.Equal(4, h.Exchanges.Count);
        var o = h.Exchanges.Single(x => x.Connection.Fd == 5);
        Assert.Equal("/where?q=now&x=%20", o.Target);
        Assert.Equal("/where?q=now&x=%20", o.Akto("path"));
        var a = h.Exchanges.Single(x => x.Connection.Fd == 6);
        Assert.Equal("http://absolute.example:8080/p?q=1", a.Akto("path"));
        Assert.Equal("absolute.example:8080", a.AktoHeaders("requestHeaders")["host"]);
        Assert.Equal(2, a.Direction);
        var s = h.Exchanges.Single(x => x.Connection.Fd == 7);
        Assert.Equal("*", s.Target);
        Assert.Equal(204, s.Status);
        var t = h.Exchanges.Single(x => x.Connection.Fd == 8);
        Assert.Equal("CONNECT", t.Method);
        Assert.Equal("tunnel.example:443", t.Target);
        Assert.Equal("tunnel.example:443", t.AktoHeaders("requestHeaders")["host"]);
        Assert.Equal(1, h.Drops("connect_tunnel"));
        Assert.Equal(18, h.Metrics.OpaqueBytes.Value);
        Assert.Equal(1, h.TotalDrops);
    }

    [Fact]
    public void Head_response_has_no_body_even_with_a_content_length()
    {
        using var h = new Harness();
        var c = h.Open(5);
        h.Request(c, "HEAD /file HTTP/1.1\r\nHost: a\r\n\r\n");
        h.Response(c, "HTTP/1.1 200 OK\r\nContent-Length: 123456\r\nContent-Type: text/plain\r\n\r\n");
        h.Request(c, "GET /next HTTP/1.1\r\nHost: a\r\n\r\n");
        h.Response(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext");
        Assert.Equal(2, h.Exchanges.Count);
        Assert.Equal("HEAD", h.Exchanges[0].Method);
        Assert.Empty(h.Exchanges[0].ResponseBody);
        Assert.Equal("123456", h.Exchanges[0].AktoHeaders("responseHeaders")["content-length"]);
        Assert.Equal("next", h.Exchanges[1].ResponseText);
        Assert.Equal(0, h.TotalDrops);
    }

    [Theory]
    [InlineData("HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")]
    [InlineData("HTTP/1.1 304 Not Modified\r\nContent-Length: 999\r\nETag: \"x\"\r\n\r\n")]
    [InlineData("HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n")]
    public void No_body_for_204_and_304(string response)
    {
        using var h = new Harness();
        var c = h.Open(5);
        h.Request(c, "GET /a HTTP/1.1\r\nHost: a\r\nIf-None-Match: \"x\"\r\n\r\n");
        h.Request(c, "GET /b HTTP/1.1\r\nHost: a\r\n\r\n");
        h.Response(c, response + "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        Assert.Equal(2, h.Exchanges.Count);
        Assert.Empty(h.Exchanges[0].ResponseBody);
        Assert.Equal("/b", h.Exchanges[1].Target);
        Assert.Equal("ok", h.Exchanges[1].ResponseText);
    }

    [Fact]
    public void Continue_100_before_the_real_response()
    {
        using var h = new Harness();
        var c = h.Open(5);
        h.Request(c, "POST /upload HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n");
        h.Response(c, "HTTP/1.1 100 Continue\r\n\r\n");
        h.Request(c, "0123456789");
        h.Response(c, "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone");
        var x = Assert.Single(h.Exchanges);
        Assert.Equal(200, x.Status);
        Assert.Equal("0123456789", x.RequestText);
        Assert.Equal("done", x.ResponseText);
        Assert.Equal(2, h.Drops("interim_response"));
    }

    [Fact]
    public void Early_final_response_waits_for_its_request_to_end()
    {
        using var h = new Harness();
        var c = h.Open(5);
        h.Request(c, "POST /big HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n\r\nabc");
        h.Response(c, "HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n");
        Assert.Empty(h.Exchanges);
        h.Request(c, "def");
        var x = Assert.Single(h.Exchanges);
        Assert.Equal(413, x.Status);
        Assert.Equal("abcdef", x.RequestText);
    }

    [Fact]
    public void Switching_protocols_makes_the_connection_opaque()
    {
        using var h = new Harness();
        var c = h.Open(5);
        h.Request(c, "GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: x\r\n\r\n");
        // a client may send its first frame right behind the request: held, then discarded
        var frame = new byte[] { 0x81, 0x85, 1, 2, 3, 4, 0x49, 0x67, 0x6f, 0x68, 0x6e };
        h.Request(c, frame);
        h.Response(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
        const string serverFrame = "\x81\x13HTTP/1.1 200 OK\r\n\r\n"; // frames that look like HTTP are still opaque
        const string clientFrame = "GET /not-parsed HTTP/1.1\r\n\r\n";
        h.Response(c, serverFrame);
        h.Request(c, clientFrame);
        var x = Assert.Single(h.Exchanges);
        Assert.Equal(101, x.Status);
        Assert.Equal("/chat", x.Target);
        Assert.Equal(1, h.Drops("connection_upgraded"));
        Assert.Equal(frame.Length + serverFrame.Length + clientFrame.Length, h.Metrics.OpaqueBytes.Value);
        h.Close(c);
        Assert.Equal(0, h.Table.RetainedBytes);
    }

    [Fact]
    public void Upgrade_request_answered_without_a_switch_keeps_parsing()
    {
        using var h = new Harness();
        var c = h.Open(5);
        h.Request(c, "GET /a HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n" +
                     "GET /b HTTP/1.1\r\nHost: a\r\n\r\n");
        h.Response(c, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na");
        h.Response(c, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb");
        Assert.Equal(["/a", "/b"], h.Exchanges.Select(x => x.Target));
        Assert.Equal(["a", "b"], h.Exchanges.Select(x => x.ResponseText));
        Assert.Equal(0, h.TotalDrops);
    }

    [Fact]
    public void An_http2_preface_after_http1_messages_is_opaque_and_counted()
    {
        // a connection's protocol is chosen from its first bytes: a preface later is not HTTP/1
        using var h = new Harness();
        var c = h.Open(5);
        h.Request(c, "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n");
        h.Response(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        h.Request(c, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\x12\x04\0\0\0\0\0");
        h.Response(c, "\0\0\0\x04\0\0\0\0\0");
        Assert.Equal(["/1"], h.Exchanges.Select(x => x.Target));
        Assert.Equal(1, h.Drops("opaque_http2_prior_knowledge"));
    }

    [Fact]
    public void Pipelined_requests_are_paired_in_order()
    {
        using var h = new Harness();
        var c = h.Open(5);
        h.Request(c, "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nPOST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nxyzHEAD /3 HTTP/1.1\r\nHost: a\r\n\r\nGET /4 HTTP/1.1\r\nHost: a\r\n\r\n");
        h.Response(c, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none" +
                      "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\ntwo\r\n0\r\n\r\n" +
                      "HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" +
                      "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nfour");
        Assert.Equal(["/1", "/2", "/3", "/4"], h.Exchanges.Select(x => x.Target));
        Assert.Equal(["one", "two", "", "four"], h.Exchanges.Select(x => x.ResponseText));
        Assert.Equal("xyz", h.Exchanges[1].RequestText);
        Assert.Equal(0, h.TotalDrops);
    }

    [Fact]
    public void Roles_come_from_the_bytes_not_from_how_the_connection_was_opened()
    {
        using var h = new Harness();
        // the kernel said "accept", but the traced process sends the requests: it is the client here
        var c = h.Open(5, tracedIsServer: false, origin: ConnectionOrigin.Accept);
        h.Event(c, StreamDirection.Egress, "GET /reverse HTTP/1.1\r\nHost: a\r\n\r\n");
        h.Event(c, StreamDirection.Ingress, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        // no open event seen at all: the roles still follow the bytes
        var d = h.Open(6, sendOpen: false);
        h.Event(d, StreamDirection.Ingress, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"); // a response first: its request was missed
        h.Event(d, StreamDirection.Egress, "DELETE /x HTTP/1.1\r\nHost: b\r\n\r\n");
        h.Event(d, StreamDirection.Ingress, "HTTP/1.1 204 No Content\r\n\r\n");
        Assert.Equal(2, h.Exchanges.Count);
        Assert.All(h.Exchanges, x => Assert.Equal(2, x.Direction));
        Assert.Equal(1, h.Drops("response_without_request"));
    }

    [Fact]
    public void Close_delimited_body_ends_at_close()
    {
        using var h = new Harness();
        var c = h.Open(5);
        h.Request(c, "GET /old HTTP/1.0\r\n\r\n");
        h.Response(c, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nfirst part, ");
        h.Response(c, "second part");
        Assert.Empty(h.Exchanges);
        h.Close(c);
        var x = Assert.Single(h.Exchanges);
        Assert.Equal("first part, second part", x.ResponseText);
        Assert.False(x.ResponseCut);
        Assert.Equal("HTTP/1.0", x.Version);
        // HTTP/1.0 without Host: the address it was sent to stands in for it
        Assert.Equal("10.0.0.1:8080", x.AktoHeaders("requestHeaders")["host"]);
        Assert.Equal(0, h.Table.RetainedBytes);
    }

    [Fact]
    public void Close_delimited_body_of_a_forgotten_connection_is_marked_incomplete()
    {
        using var h = new Harness(inactivity: TimeSpan.FromSeconds(1));
        var c = h.Open(5);
        h.Request(c, "GET /stream HTTP/1.1\r\nHost: a\r\n\r\n");
        h.Response(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: 1\n\n");
        h.Table.Sweep(Environment.TickCount64 + 5_000);
        var x = Assert.Single(h.Exchanges);
        Assert.True(x.ResponseCut);
        Assert.Equal("data: 1\n\n", x.Akto("responsePayload"));
        Assert.StartsWith("incomplete; kept=9; wire=9", x.AktoHeaders("responseHeaders")["x-collector-body-truncated"]);
        Assert.Equal(1, h.Metrics.ConnectionsEnded["idle"].Value);
    }

    [Fact]
    public void Repeated_headers_are_joined_names_kept_as_sent()
    {
        using var h = new Harness();
        var c = h.Open(5);
        h.Request(c, "GET / HTTP/1.1\r\nHOST: Mixed.Example\r\nAccept: text/html\r\nX-Forwarded-For: 10.1.1.1\r\naccept: application/json\r\n" +
                     "x-forwarded-for: 10.2.2.2\r\nX-Folded: one\r\n  two\r\nEmpty:\r\n\r\n");
        h.Response(c, "HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 0\r\n\r\n");
        var x = Assert.Single(h.Exchanges);
        var json = System.Text.Json.JsonDocument.Parse(x.Akto("requestHeaders")).RootElement;
        Assert.Equal(["HOST", "Accept", "X-Forwarded-For", "X-Folded", "Empty"], json.EnumerateObject().Select(p => p.Name));
        Assert.Equal("text/html, application/json", json.GetProperty("Accept").GetString());
        Assert.Equal("10.1.1.1, 10.2.2.2", json.GetProperty("X-Forwarded-For").GetString());
        Assert.Equal("one two", json.GetProperty("X-Folded").GetString());
        Assert.Equal("", json.GetProperty("Empty").GetString());
        Assert.Equal("Mixed.Example", x.AktoHeaders("requestHeaders")["host"]);
        Assert.Equal("a=1, b=2", x.AktoHeaders("responseHeaders")["set-cookie"]);
        Assert.Equal("Mixed.Example|GET|/", $"{x.AktoHeaders("requestHeaders")["host"]}|{x.Method}|{x.Target}");
    }

    [Fact]
    public void Header_values_that_are_not_utf8_are_read_as_latin1()
    {
        using var h = new Harness();
        var c = h.Open(5);
        h.Request(c, Encoding.Latin1.GetBytes("GET / HTTP/1.1\r\nHost: a\r\nX-Name: Jos\u00e9\r\n\r\n"));
        h.Request(c, Encoding.UTF8.GetBytes("GET / HTTP/1.1\r\nHost: a\r\nX-Name: Jos\u00e9\r\n\r\n"));
        h.Response(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        Assert.Equal(2, h.Exchanges.Count);
        Assert.All(h.Exchanges, x => Assert.Equal("Jos\u00e9", x.AktoHeaders("requestHeaders")["x-name"]));
    }

    [Fact]
    public void Lf_only_line_endings_and_blank_lines_between_messages_are_tolerated()
    {
        using var h = new Harness();
        var c = h.Open(5);
        h.Request(c, "GET /lf HTTP/1.1\nHost: a\n\n\r\n\r\nGET /two HTTP/1.1\r\nHost: a\r\n\r\n");
        h.Response(c, "HTTP/1.1 200 OK\nContent-Length: 1\n\nxHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\ny");
        Assert.Equal(["x", "y"], h.Exchanges.Select(x => x.ResponseText));
    }

    [Theory]
    [InlineData("Content-Length: -5\r\n", "malformed_invalid_content_length")]
    [InlineData("Content-Length: 5, 6\r\n", "malformed_invalid_content_length")]
    [InlineData("Content-Length: 99999999999999999999999\r\n", "malformed_invalid_content_length")]
    [InlineData("Content-Length: 0x10\r\n", "malformed_invalid_content_length")]
    [InlineData("Transfer-Encoding: gzip\r\n", "malformed_request_transfer_encoding_not_chunked")]
    [InlineData("Bad Header: x\r\n", "malformed_invalid_field_line")]
    [InlineData("NoColon\r\n", "malformed_invalid_field_line")]
    public void Malformed_requests_are_counted_and_the_next_message_is_found(string field, string reason)
    {
        using var h = new Harness();
        var c = h.Open(5);
        h.Request(c, $"POST /bad HTTP/1.1\r\nHost: a\r\n{field}\r\nhello");
        h.Response(c, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        h.Request(c, "GET /good HTTP/1.1\r\nHost: a\r\n\r\n");
        h.Response(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        Assert.Equal(1, h.Drops(reason));
        Assert.Equal(1, h.Drops("request_malformed")); // the bad request kept its place: its 400 went with it
        var x = Assert.Single(h.Exchanges);
        Assert.Equal("/good", x.Target);
        Assert.Equal("ok", x.ResponseText);
    }

    [Theory]
    [InlineData("1x\r\n")]
    [InlineData("-1\r\n")]
    [InlineData("fffffffffffffffff\r\n")]
    [InlineData("\r\n")]
    public void Invalid_chunk_sizes_are_malformed(string chunk)
    {
        using var h = new Harness();
        var c = h.Open(5);
        h.Request(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        h.Response(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk + "abc\r\n0\r\n\r\n");
        Assert.Empty(h.Exchanges);
        Assert.Equal(1, h.Drops("malformed_invalid_chunk_size"));
        Assert.Equal(1, h.Drops("response_malformed"));
    }
}
