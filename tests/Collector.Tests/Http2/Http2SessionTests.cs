using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;
using Collector.Events;
using Collector.Tests.Http;

namespace Collector.Tests.Http2;

/// <summary>The HTTP/2 session on hand-made frames: how streams become exchanges and Akto
/// messages, h2c upgrades, and the gRPC message pairs.</summary>
public sealed class Http2SessionTests
{
    private static readonly byte[] Preface = Encoding.ASCII.GetBytes("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

    // ---- a minimal encoder: static-table references and literals without indexing ----

    private static byte[] Frame(byte type, byte flags, uint stream, byte[] payload)
    {
        var f = new byte[9 + payload.Length];
        f[0] = (byte)(payload.Length >> 16); f[1] = (byte)(payload.Length >> 8); f[2] = (byte)payload.Length;
        f[3] = type; f[4] = flags;
        BinaryPrimitives.WriteUInt32BigEndian(f.AsSpan(5), stream);
        payload.CopyTo(f, 9);
        return f;
    }

    private static byte[] Settings() => Frame(4, 0, 0, []);

    /// <summary>A header block: static-table fields by index, the rest as literals without indexing.</summary>
    private static byte[] Block(params (string Name, string Value)[] fields)
    {
        var o = new List<byte>();
        foreach (var (name, value) in fields)
        {
            var full = Array.FindIndex(Static, s => s.Name == name && s.Value == value);
            if (full >= 0) { o.Add((byte)(0x80 | (full + 1))); continue; }
            o.Add(0x00);
            Str(o, name);
            Str(o, value);
        }
        return o.ToArray();
    }

    private static void Str(List<byte> o, string s)
    {
        var b = Encoding.UTF8.GetBytes(s);
        if (b.Length < 127) o.Add((byte)b.Length);
        else { o.Add(127); var v = b.Length - 127; while (v >= 128) { o.Add((byte)(v % 128 + 128)); v /= 128; } o.Add((byte)v); }
        o.AddRange(b);
    }

    private static readonly (string Name, string Value)[] Static =
    [
        (":authority", ""), (":method", "GET"), (":method", "POST"), (":path", "/"), (":path", "/index.html"),
        (":scheme", "http"), (":scheme", "https"), (":status", "200"),
    ];

    private static byte[] Headers(uint stream, bool endStream, params (string, string)[] fields) =>
        Frame(1, (byte)(0x4 | (endStream ? 1 : 0)), stream, Block(fields));

    private static byte[] Data(uint stream, bool endStream, byte[] data) => Frame(0, (byte)(endStream ? 1 : 0), stream, data);

    private static byte[] Cat(params byte[][] parts) => parts.SelectMany(p => p).ToArray();

    private static byte[] GrpcMessage(byte[] protobuf, bool compressed = false)
    {
        var m = new byte[5 + protobuf.Length];
        m[0] = (byte)(compressed ? 1 : 0);
        BinaryPrimitives.WriteUInt32BigEndian(m.AsSpan(1), (uint)protobuf.Length);
        protobuf.CopyTo(m, 5);
        return m;
    }

    /// <summary>Protobuf field 1 (a string).</summary>
    private static byte[] Proto(string s)
    {
        var b = Encoding.UTF8.GetBytes(s);
        return [0x0a, (byte)b.Length, .. b];
    }

    private static readonly (string, string)[] GrpcRequest =
    [
        (":method", "POST"), (":scheme", "http"), (":path", "/echo.Echo/Say"), (":authority", "svc:50051"),
        ("content-type", "application/grpc"), ("te", "trailers"),
    ];

    private static readonly (string, string)[] GrpcResponse = [(":status", "200"), ("content-type", "application/grpc")];
    private static readonly (string, string)[] GrpcTrailers = [("grpc-status", "0"), ("grpc-message", "")];

    // ---- exchanges ----

    [Fact]
    public void A_prior_knowledge_stream_is_an_exchange_with_pseudo_headers_mapped()
    {
        using var h = new Harness();
        var c = h.Open(5);
        h.Request(c, Cat(Preface, Settings(),
            Headers(1, false, (":method", "POST"), (":scheme", "http"), (":path", "/api/users?id=4"), (":authority", "api.local:8080"),
                ("content-type", "application/json"), ("x-trace", "a")),
            Data(1, true, "{\"a\":1}"u8.ToArray())));
        h.Response(c, Cat(Settings(), Frame(4, 1, 0, []),
            Headers(1, false, (":status", "201"), ("content-type", "application/json")),
            Data(1, false, "{\"id\""u8.ToArray()), Data(1, true, ":7}"u8.ToArray())));
        var x = Assert.Single(h.Exchanges);
        Assert.Equal(("POST", "/api/users?id=4", "HTTP/2", 201), (x.Method, x.Target, x.Version, x.Status));
        Assert.Equal("{\"a\":1}", x.RequestText);
        Assert.Equal("{\"id\":7}", x.ResponseText);
        var req = x.AktoHeaders("requestHeaders");
        Assert.Equal("api.local:8080", req["host"]);
        Assert.Equal("a", req["x-trace"]);
        Assert.DoesNotContain(req.Keys, k => k.StartsWith(':'));
        Assert.Equal("HTTP/2", x.Akto("type"));
        Assert.Equal("201", x.Akto("statusCode"));
        Assert.Equal("201", x.Akto("status"));
        Assert.Equal(1, h.Metrics.Http2Connections["preface"].Value);
        Assert.Equal(0, h.TotalDrops);
    }

    [Fact]
    public void Trailers_are_merged_into_the_response_headers_and_1xx_headers_are_skipped()
    {
        using var h = new Harness();
        var c = h.Open(5);
        h.Request(c, Cat(Preface, Settings(), Headers(3, true, (":method", "GET"), (":scheme", "https"), (":path", "/t"), (":authority", "a"))));
        h.Response(c, Cat(Settings(),
            Headers(3, false, (":status", "103"), ("link", "</s.css>")),
            Headers(3, false, (":status", "200")),
            Data(3, false, "body"u8.ToArray()),
            Headers(3, true, ("x-checksum", "abc"))));
        var x = Assert.Single(h.Exchanges);
        var resp = x.AktoHeaders("responseHeaders");
        Assert.Equal("abc", resp["x-checksum"]);
        Assert.False(resp.ContainsKey("link"));
        Assert.Equal("body", x.ResponseText);
        Assert.Equal(1, h.Drops("interim_response"));
    }

    [Fact]
    public void The_server_writing_first_is_recognised_and_its_reads_of_the_preface_follow()
    {
        using var h = new Harness();
        var c = h.Open(5, tracedIsServer: true);
        h.Response(c, Settings()); // the server's SETTINGS before it read anything
        h.Request(c, Cat(Preface, Settings(), Headers(1, true, (":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "a"))));
        h.Response(c, Cat(Headers(1, false, (":status", "200")), Data(1, true, "ok"u8.ToArray())));
        var x = Assert.Single(h.Exchanges);
        Assert.Equal(1, x.Direction);
        Assert.Equal("ok", x.ResponseText);
    }

    /// <summary>The client's preface and first frames went by unseen (Go's first TLS read served
    /// from what the handshake buffered, no syscall to tie it to its socket): the missing preface is
    /// counted, and the frames that follow are read where they begin, not skipped with the event.</summary>
    [Fact]
    public void A_missing_preface_is_counted_and_the_frames_after_it_are_still_read()
    {
        using var h = new Harness();
        var c = h.Open(5, tracedIsServer: true);
        h.Response(c, Settings());
        // the first request (preface, SETTINGS, stream 1) never arrived; stream 3 does
        h.Request(c, Cat(Settings(), Headers(3, true, (":method", "GET"), (":scheme", "http"), (":path", "/second"), (":authority", "a"))));
        h.Response(c, Cat(Headers(3, false, (":status", "200")), Data(3, true, "ok"u8.ToArray())));
        var x = Assert.Single(h.Exchanges);
        Assert.Equal("/second", x.Akto("path"));
        Assert.Equal("ok", x.ResponseText);
        Assert.Equal(1, h.Drops("malformed_h2_bad_preface"));
    }

    [Fact]
    public void A_stream_reset_before_its_response_is_counted_and_others_go_on()
    {
        using var h = new Harness();
        var c = h.Open(5);
        h.Request(c, Cat(Preface, Settings(),
            Headers(1, true, (":method", "GET"), (":scheme", "http"), (":path", "/slow"), (":authority", "a")),
            Headers(3, true, (":method", "GET"), (":scheme", "http"), (":path", "/fast"), (":authority", "a"))));
        h.Response(c, Cat(Settings(), Headers(1, false, (":status", "200")), Data(1, false, "part"u8.ToArray()),
            Frame(3, 0, 1, [0, 0, 0, 8]), // RST_STREAM CANCEL on stream 1, mid-body
            Headers(3, false, (":status", "200")), Data(3, true, "done"u8.ToArray())));
        var x = Assert.Single(h.Exchanges);
        Assert.Equal("/fast", x.Target);
        Assert.Equal(1, h.Drops("h2_stream_reset"));
    }

    [Fact]
    public void An_h2c_upgrade_makes_the_upgrade_request_stream_1_and_later_streams_follow()
    {
        using var h = new Harness();
        var c = h.Open(5, tracedIsServer: false);
        h.Request(c, "GET /first HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n");
        // the 101 and the server's first frames in one read
        h.Response(c, Cat(Encoding.ASCII.GetBytes("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"),
            Settings(), Headers(1, false, (":status", "200")), Data(1, true, "one"u8.ToArray())));
        h.Request(c, Cat(Preface, Settings(), Frame(4, 1, 0, []),
            Headers(3, true, (":method", "GET"), (":scheme", "http"), (":path", "/second"), (":authority", "a"))));
        h.Response(c, Cat(Frame(4, 1, 0, []), Headers(3, false, (":status", "200")), Data(3, true, "two"u8.ToArray())));
        Assert.Equal(["/first", "/second"], h.Exchanges.Select(x => x.Target));
        Assert.Equal(["one", "two"], h.Exchanges.Select(x => x.ResponseText));
        Assert.Equal(2, h.Exchanges[0].Direction);
        Assert.Equal(1, h.Metrics.Http2Connections["upgrade"].Value);
        Assert.Equal(0, h.Drops("connection_upgraded"));
    }

    [Fact]
    public void Padding_priority_and_continuation_are_read_through_and_frames_cut_anywhere_give_the_same()
    {
        var headers = Block((":method", "GET"), (":scheme", "http"), (":path", "/padded"), (":authority", "a"), ("x-long", new string('v', 300)));
        var split = 100;
        // HEADERS with PADDED and PRIORITY, then a CONTINUATION
        var first = new List<byte> { 7 };                        // pad length
        first.AddRange(new byte[] { 0x80, 0, 0, 3, 15 });        // exclusive dependency on 3, weight
        first.AddRange(headers.AsSpan(0, split).ToArray());
        first.AddRange(new byte[7]);
        var request = Cat(Preface, Settings(), Frame(1, 0x08 | 0x20 | 0x01, 1, first.ToArray()), Frame(9, 0x4, 1, headers[split..]));
        var paddedData = Cat([3], "body"u8.ToArray(), new byte[3]);
        var response = Cat(Settings(), Headers(1, false, (":status", "200")), Frame(0, 0x08 | 0x01, 1, paddedData));
        for (var cut = 1; cut < 40; cut += 3)
        {
            using var h = new Harness();
            var c = h.Open(5);
            for (var i = 0; i < request.Length; i += cut) h.Request(c, request.AsSpan(i, Math.Min(cut, request.Length - i)).ToArray());
            for (var i = 0; i < response.Length; i += cut) h.Response(c, response.AsSpan(i, Math.Min(cut, response.Length - i)).ToArray());
            var x = Assert.Single(h.Exchanges);
            Assert.Equal("/padded", x.Target);
            Assert.Equal(new string('v', 300), x.AktoHeaders("requestHeaders")["x-long"]);
            Assert.Equal("body", x.ResponseText);
        }
    }

    [Fact]
    public void A_hole_inside_a_data_frame_marks_the_body_and_framing_stays()
    {
        using var h = new Harness();
        var c = h.Open(5);
        h.Request(c, Cat(Preface, Settings(), Headers(1, true, (":method", "GET"), (":scheme", "http"), (":path", "/big"), (":authority", "a"))));
        var data = Data(1, false, new byte[1000]);
        h.Response(c, Cat(Settings(), Headers(1, false, (":status", "200")), data[..300]));
        h.Gap(c, c.ResponseDirection, 500);
        h.Response(c, Cat(data[800..], Data(1, true, "end"u8.ToArray()),
            Headers(3, true, (":status", "200")))); // a frame for a stream never opened: ignored
        h.Request(c, Headers(5, true, (":method", "GET"), (":scheme", "http"), (":path", "/after"), (":authority", "a")));
        h.Response(c, Cat(Headers(5, false, (":status", "200")), Data(5, true, "fine"u8.ToArray())));
        Assert.Equal(["/big", "/after"], h.Exchanges.Select(x => x.Target));
        Assert.True(h.Exchanges[0].ResponseCut);
        Assert.Contains("gap", h.Exchanges[0].AktoHeaders("responseHeaders")["x-collector-body-truncated"]);
        Assert.Equal("fine", h.Exchanges[1].ResponseText);
    }

    [Fact]
    public void A_hole_across_frames_loses_framing_until_an_event_starts_with_frames()
    {
        using var h = new Harness();
        var c = h.Open(5);
        h.Request(c, Cat(Preface, Settings(), Headers(1, true, (":method", "GET"), (":scheme", "http"), (":path", "/a"), (":authority", "a"))));
        h.Response(c, Cat(Settings(), Headers(1, false, (":status", "200")), Data(1, false, new byte[100])));
        h.Gap(c, c.ResponseDirection, 5000);
        h.Response(c, "garbage that is not a frame"u8.ToArray());
        h.Request(c, Headers(3, true, (":method", "GET"), (":scheme", "http"), (":path", "/b"), (":authority", "a")));
        h.Response(c, Cat(Headers(3, false, (":status", "200")), Data(3, true, "b"u8.ToArray())));
        Assert.Equal(["/b"], h.Exchanges.Select(x => x.Target));
        Assert.Equal(1, h.Drops("sync_lost_h2_gap"));
        h.Close(c);
        Assert.Equal(["/b", "/a"], h.Exchanges.Select(x => x.Target)); // cut by the close, marked
        Assert.True(h.Exchanges[1].ResponseCut);
    }

    // ---- gRPC ----

    private static (Harness H, TestConn C) GrpcCall(byte[] clientFrames, byte[] serverFrames)
    {
        var h = new Harness();
        var c = h.Open(5);
        h.Request(c, Cat(Preface, Settings(), clientFrames));
        h.Response(c, Cat(Settings(), serverFrames));
        return (h, c);
    }

    private static byte[] Payload(Captured x, string field) => Convert.FromBase64String(x.Akto(field));

    [Fact]
    public void A_unary_grpc_call_is_one_exchange_with_each_payload_one_length_prefixed_message_in_base64()
    {
        // "hi" as protobuf field 1 is all ASCII: still base64, the processor decodes every gRPC body so
        var (h, _) = GrpcCall(
            Cat(Headers(1, false, GrpcRequest), Data(1, true, GrpcMessage(Proto("hi")))),
            Cat(Headers(1, false, GrpcResponse), Data(1, false, GrpcMessage(Proto("hello hi"))), Headers(1, true, GrpcTrailers)));
        using (h)
        {
            var x = Assert.Single(h.Exchanges);
            Assert.Equal(GrpcMessage(Proto("hi")), Payload(x, "requestPayload"));
            Assert.Equal(GrpcMessage(Proto("hello hi")), Payload(x, "responsePayload"));
            Assert.Equal("application/grpc", x.AktoHeaders("requestHeaders")["content-type"]);
            Assert.Equal("0", x.AktoHeaders("requestHeaders")["x-collector-grpc-index"]);
            Assert.Equal("0", x.AktoHeaders("responseHeaders")["grpc-status"]);
            Assert.Equal("/echo.Echo/Say", x.Akto("path"));
        }
    }

    [Fact]
    public void Server_streaming_gives_one_exchange_per_message_in_order_the_last_with_the_trailers()
    {
        var responses = Enumerable.Range(0, 5).Select(i => Data(1, false, GrpcMessage(Proto("r" + i)))).ToArray();
        var (h, _) = GrpcCall(
            Cat(Headers(1, false, GrpcRequest), Data(1, true, GrpcMessage(Proto("q")))),
            Cat(Headers(1, false, GrpcResponse), Cat(responses), Headers(1, true, GrpcTrailers)));
        using (h)
        {
            Assert.Equal(5, h.Exchanges.Count);
            for (var i = 0; i < 5; i++)
            {
                var x = h.Exchanges[i];
                Assert.Equal(i.ToString(), x.AktoHeaders("requestHeaders")["x-collector-grpc-index"]);
                Assert.Equal(GrpcMessage(Proto("r" + i)), Payload(x, "responsePayload"));
                Assert.Equal(i == 0 ? GrpcMessage(Proto("q")) : [], Payload(x, "requestPayload"));
                Assert.Equal(i == 4, x.AktoHeaders("responseHeaders").ContainsKey("grpc-status"));
            }
        }
    }

    [Fact]
    public void Client_streaming_and_bidi_pair_messages_by_index_and_lose_none()
    {
        // client streaming: 4 requests, then one response
        var requests = Enumerable.Range(0, 4).Select(i => Data(1, i == 3, GrpcMessage(Proto("q" + i)))).ToArray();
        var (h, _) = GrpcCall(Cat(Headers(1, false, GrpcRequest), Cat(requests)),
            Cat(Headers(1, false, GrpcResponse), Data(1, false, GrpcMessage(Proto("sum"))), Headers(1, true, GrpcTrailers)));
        using (h)
        {
            Assert.Equal(4, h.Exchanges.Count);
            Assert.Equal(Enumerable.Range(0, 4).Select(i => GrpcMessage(Proto("q" + i))), h.Exchanges.Select(x => Payload(x, "requestPayload")));
            Assert.Equal(GrpcMessage(Proto("sum")), Payload(h.Exchanges[0], "responsePayload"));
            Assert.All(h.Exchanges.Skip(1), x => Assert.Empty(Payload(x, "responsePayload")));
        }

        // bidi, ping-pong, each message in its own event
        using var b = new Harness();
        var c = b.Open(6);
        b.Request(c, Cat(Preface, Settings(), Headers(1, false, GrpcRequest)));
        b.Response(c, Cat(Settings(), Headers(1, false, GrpcResponse)));
        for (var i = 0; i < 3; i++)
        {
            b.Request(c, Data(1, i == 2, GrpcMessage(Proto("ping" + i))));
            b.Response(c, Data(1, false, GrpcMessage(Proto("pong" + i))));
            Assert.Equal(i, b.Exchanges.Count); // pair i waits for a later message or the end (trailers)
        }
        b.Response(c, Headers(1, true, GrpcTrailers));
        Assert.Equal(3, b.Exchanges.Count);
        for (var i = 0; i < 3; i++)
        {
            Assert.Equal(GrpcMessage(Proto("ping" + i)), Payload(b.Exchanges[i], "requestPayload"));
            Assert.Equal(GrpcMessage(Proto("pong" + i)), Payload(b.Exchanges[i], "responsePayload"));
        }
        Assert.Equal(6, b.Metrics.GrpcMessages.Value);
    }

    [Fact]
    public void A_gzip_compressed_grpc_message_is_inflated_with_its_flag_cleared_and_a_message_across_frames_is_whole()
    {
        var big = Proto(new string('x', 100)) .Concat(Enumerable.Repeat((byte)0x10, 1)).ToArray();
        big = [.. big, 0x01];
        using var ms = new MemoryStream();
        using (var gz = new GZipStream(ms, CompressionLevel.Optimal, leaveOpen: true)) gz.Write(big);
        var compressed = GrpcMessage(ms.ToArray(), compressed: true);
        var large = GrpcMessage(Enumerable.Range(0, 40000).Select(i => (byte)(i % 120)).ToArray());
        var (h, _) = GrpcCall(
            Cat(Headers(1, false, [.. GrpcRequest, ("grpc-encoding", "gzip")]), Data(1, true, compressed)),
            Cat(Headers(1, false, GrpcResponse), Data(1, false, large[..16384]), Data(1, false, large[16384..32768]),
                Data(1, false, large[32768..]), Headers(1, true, GrpcTrailers)));
        using (h)
        {
            var x = Assert.Single(h.Exchanges);
            Assert.Equal(GrpcMessage(big), Payload(x, "requestPayload"));
            Assert.Equal(large, Payload(x, "responsePayload"));
        }
    }

    [Fact]
    public void Grpc_data_before_any_response_headers_is_counted_not_thrown()
    {
        using var h = new Harness();
        var c = h.Open(5);
        h.Request(c, Cat(Preface, Settings(), Headers(1, true, GrpcRequest)));
        h.Response(c, Cat(Settings(), Data(1, false, Cat(Enumerable.Range(0, 300).Select(_ => GrpcMessage([])).ToArray())), Data(1, true, GrpcMessage([]))));
        Assert.Empty(h.Exchanges);
        Assert.Equal(1, h.Drops("request_without_response"));
        h.Close(c);
        Assert.Equal(0, h.Table.RetainedBytes);
    }

    [Fact]
    public void Unnamed_streams_leave_the_table_at_their_end_so_a_busy_connection_never_fills_it()
    {
        using var h = new Harness(maxHeaderBytes: 256);
        var c = h.Open(5);
        h.Request(c, Cat(Preface, Settings()));
        h.Response(c, Settings());
        for (uint i = 0; i < 1100; i++)
        {
            var id = 1 + 2 * i;
            // every other request's header block is over the cap: never named, counted
            var big = i % 2 == 0 ? new string('c', 400) : "x";
            h.Request(c, Headers(id, true, (":method", "GET"), (":scheme", "http"), (":path", "/" + i), (":authority", "a"), ("cookie", big)));
            h.Response(c, Cat(Headers(id, false, (":status", "200")), Data(id, true, "ok"u8.ToArray())));
        }
        Assert.Equal(550, h.Exchanges.Count);
        Assert.Equal(550, h.Metrics.Http2StreamsUnnamed["header_block_too_large"].Value);
        Assert.Equal(0, h.Drops("h2_stream_stale"));
    }

    [Fact]
    public void Streams_whose_end_never_came_leave_a_full_table_oldest_first_and_new_streams_are_still_emitted()
    {
        using var h = new Harness();
        var c = h.Open(5);
        h.Request(c, Cat(Preface, Settings()));
        h.Response(c, Settings());
        // 1100 requests answered with headers only: their ends (END_STREAM) never come, as when
        // they went by in a hole; past 1024 the oldest leave the table, counted
        for (uint i = 0; i < 1100; i++)
        {
            var id = 1 + 2 * i;
            h.Request(c, Headers(id, true, (":method", "GET"), (":scheme", "http"), (":path", "/stuck/" + i), (":authority", "a")));
            h.Response(c, Headers(id, false, (":status", "200")));
        }
        Assert.Equal(1100 - 1024, h.Drops("h2_stream_stale"));
        Assert.Empty(h.Exchanges);
        // a stream after them is emitted as ever
        var next = 1 + 2 * 1100u;
        h.Request(c, Headers(next, true, (":method", "GET"), (":scheme", "http"), (":path", "/after"), (":authority", "a")));
        h.Response(c, Cat(Headers(next, false, (":status", "200")), Data(next, true, "ok"u8.ToArray())));
        Assert.Equal("/after", Assert.Single(h.Exchanges).Target);
        Assert.Equal(1100 - 1024 + 1, h.Drops("h2_stream_stale"));
    }

    [Fact]
    public void A_hole_across_a_grpc_prefix_loses_those_messages_counted_and_framing_returns_at_the_next_data_frame()
    {
        using var h = new Harness();
        var c = h.Open(5);
        h.Request(c, Cat(Preface, Settings(), Headers(1, false, GrpcRequest), Data(1, true, GrpcMessage(Proto("q")))));
        var lost = Data(1, false, Cat(GrpcMessage(Proto("r0")), GrpcMessage(Proto("r1"))));
        h.Response(c, Cat(Settings(), Headers(1, false, GrpcResponse), lost[..12]));
        h.Gap(c, c.ResponseDirection, lost.Length - 12 + 40); // the rest of that frame and more
        h.Response(c, Cat(Data(1, false, GrpcMessage(Proto("r2"))), Data(1, false, GrpcMessage(Proto("r3"))), Headers(1, true, GrpcTrailers)));
        Assert.Equal(1, h.Drops("grpc_framing_lost"));
        var responses = h.Exchanges.Select(x => Payload(x, "responsePayload")).Where(p => p.Length > 0).ToList();
        Assert.Equal([GrpcMessage(Proto("r2")), GrpcMessage(Proto("r3"))], responses);
    }
}
