using System.Text;
using Collector.Events;
using Collector.Tests.Http;
using FsCheck;
using FsCheck.Fluent;
using static Collector.Tests.Http2.H2Frames;

namespace Collector.Tests.Http2;

/// <summary>Hand-made and hostile HTTP/2: frames of the wrong size, lying padding, frames where none
/// may be, header blocks that never end, HPACK table bombs, random bytes. Never an exception out of
/// the engine, memory within the header cap (plus a frame or so) after every event, what was lost
/// is counted, and what was valid comes out right; after a stream-level error, the other streams
/// still do.</summary>
public sealed class Http2SessionHostileTests
{
    private const int HeaderCap = 64 * 1024;
    private const int BodyCap = 16 * 1024;
    /// <summary>The header cap plus the body cap plus a frame: what one connection may hold.</summary>
    private const long Bound = HeaderCap + BodyCap + 16 * 1024 + 9;

    /// <summary>For table bombs: one pending exchange's headers, a table as large as the header cap,
    /// a body, a frame. Megabytes of entries must not show.</summary>
    private const long BombBound = 2 * HeaderCap + BodyCap + 16 * 1024 + 9;

    private static Harness New() => new(maxHeaderBytes: HeaderCap, maxBodyBytes: BodyCap);

    /// <summary>A connection past its prefaces (the server's SETTINGS as given).</summary>
    private static TestConn Start(Harness h, bool tracedIsServer = true, params (ushort Id, uint Value)[] serverSettings)
    {
        var c = h.Open(5, tracedIsServer);
        h.Request(c, ClientStart((H2Setting.EnablePush, 0)));
        h.Response(c, ServerStart(serverSettings));
        h.Request(c, SettingsAck());
        return c;
    }

    /// <summary>Bytes in events of piece bytes, memory checked after each.</summary>
    private static void Feed(Harness h, TestConn c, StreamDirection d, byte[] bytes, int piece = 4096, long bound = Bound)
    {
        for (var at = 0; at < bytes.Length; at += piece)
        {
            h.Event(c, d, bytes.AsSpan(at, Math.Min(piece, bytes.Length - at)));
            Assert.InRange(h.Table.RetainedBytes, 0, bound);
            Assert.InRange(Interlocked.Read(ref h.Metrics.BufferedBytes), 0, bound);
        }
    }

    /// <summary>A valid POST and its answer on a stream, bodies naming the path.</summary>
    private static void Exchange(Harness h, TestConn c, uint stream, string path)
    {
        h.Request(c, Concat(Request(stream, "POST", path, headers: [("content-type", "text/plain")], endStream: false),
            Data(stream, "ping " + path, endStream: true)));
        h.Response(c, Concat(Response(stream, 200, [("content-type", "text/plain")], endStream: false),
            Data(stream, "pong " + path, endStream: true)));
    }

    private static void AssertCaptured(Harness h, string path)
    {
        var x = h.Exchanges.Where(e => e.Target == path).ToList();
        Assert.True(x.Count == 1, $"'{path}' emitted {x.Count} times; {H2Test.MetricSummary(h)}");
        Assert.Equal("HTTP/2", x[0].Version);
        Assert.Equal("ping " + path, x[0].RequestText);
        Assert.Equal("pong " + path, x[0].ResponseText);
        Assert.Equal(200, x[0].Status);
    }

    /// <summary>Nothing emitted but the given valid exchanges, each right.</summary>
    private static void AssertOnly(Harness h, params string[] paths)
    {
        foreach (var x in h.Exchanges)
        {
            Assert.True(paths.Contains(x.Target), $"emitted '{x.Method} {x.Target}', which was never a valid exchange");
            AssertCaptured(h, x.Target);
        }
    }

    private static void AssertCounted(Harness h, string what) =>
        Assert.True(H2Test.Counted(h) > 0, $"{what}: not counted; {H2Test.MetricSummary(h)}");

    private static void End(Harness h, TestConn c)
    {
        h.Close(c);
        Assert.Equal(0, h.Table.RetainedBytes);
        Assert.Equal(0, Interlocked.Read(ref h.Metrics.BufferedBytes));
    }

    // ---- valid, by hand ----

    [Fact]
    public void Every_hpack_representation_written_by_hand_decodes()
    {
        using var h = New();
        var c = Start(h, tracedIsServer: false, (H2Setting.HeaderTableSize, 4096));
        // stream 1: static indexed, static names, a new name with indexing, never indexed, without indexing
        var b1 = new Hpack().SizeUpdate(4096).Indexed(3).Indexed(7).Literal(4, "/hand/1", HpackIndexing.Never)
            .Literal(1, "api.example", HpackIndexing.Incremental)     // :authority, dynamic 62 after x-tenant below: 63
            .Literal("x-tenant", "acme", HpackIndexing.Incremental)   // dynamic 62
            .Literal(23, "Bearer secret", HpackIndexing.Never)        // authorization
            .Literal("x-plain", "1", HpackIndexing.Without)
            .Indexed(16);                                             // accept-encoding: gzip, deflate
        h.Request(c, Concat(Headers(1, b1, endStream: false), Data(1, "ping /hand/1", endStream: true)));
        h.Response(c, Concat(Headers(1, new Hpack().Indexed(8).Literal(31, "text/plain", HpackIndexing.Incremental)),
            Data(1, "pong /hand/1"), Headers(1, new Hpack().Literal("grpc-status", "0"), endStream: true)));
        // stream 3: the dynamic entries by index; the response reuses its own table's content-type
        var b3 = new Hpack().Indexed(3).Indexed(6).Literal(4, "/hand/3").Indexed(63).Indexed(62);
        h.Request(c, Concat(Headers(3, b3, endStream: false), Data(3, "ping /hand/3", endStream: true)));
        h.Response(c, Concat(Headers(3, new Hpack().Indexed(8).Indexed(62)), Data(3, "pong /hand/3", endStream: true)));
        // stream 5: a header block in three pieces, padded, with priority
        var b5 = new Hpack().Indexed(3).Indexed(7).Literal(4, "/hand/5").Indexed(63).Literal("x-split", new string('s', 300)).ToArray();
        h.Request(c, Concat(
            Headers(5, b5.AsSpan(0, 10), endHeaders: false, padLength: 7, priority: (0, 200, false)),
            Continuation(5, b5.AsSpan(10, 100), endHeaders: false), Continuation(5, b5.AsSpan(110), endHeaders: true),
            Data(5, Encoding.ASCII.GetBytes("ping /hand/5"), endStream: true, padLength: 255)));
        h.Response(c, Concat(Headers(5, new Hpack().Indexed(8), padLength: 0), Data(5, "pong /hand/5", endStream: true)));
        End(h, c);

        Assert.Equal(3, h.Exchanges.Count);
        foreach (var p in new[] { "/hand/1", "/hand/3", "/hand/5" }) AssertCaptured(h, p);
        var x1 = h.Exchanges.Single(x => x.Target == "/hand/1");
        Assert.Equal([("host", "api.example"), ("x-tenant", "acme"), ("authorization", "Bearer secret"), ("x-plain", "1"), ("accept-encoding", "gzip, deflate")],
            x1.RequestHeaders.Select(kv => (kv.Key, kv.Value)));
        Assert.Equal([("content-type", "text/plain"), ("grpc-status", "0")], x1.ResponseHeaders.Select(kv => (kv.Key, kv.Value)));
        var x3 = h.Exchanges.Single(x => x.Target == "/hand/3");
        Assert.Equal([("host", "api.example"), ("x-tenant", "acme")], x3.RequestHeaders.Select(kv => (kv.Key, kv.Value)));
        Assert.Equal([("content-type", "text/plain")], x3.ResponseHeaders.Select(kv => (kv.Key, kv.Value)));
        Assert.Equal(2, x3.Direction);
        var x5 = h.Exchanges.Single(x => x.Target == "/hand/5");
        Assert.Equal([("host", "api.example"), ("x-split", new string('s', 300))], x5.RequestHeaders.Select(kv => (kv.Key, kv.Value)));
        Assert.Equal(0, h.TotalDrops);
    }

    [Fact]
    public void A_frame_as_large_as_the_receiver_allowed_is_valid()
    {
        using var h = new Harness();
        var c = Start(h, true, (H2Setting.MaxFrameSize, 65536));
        var body = new byte[40000];
        new Random(1).NextBytes(body);
        h.Request(c, Concat(Request(1, "PUT", "/big", endStream: false), Data(1, body, endStream: true)));
        h.Response(c, Response(1, 204));
        End(h, c);
        var x = Assert.Single(h.Exchanges);
        Assert.Equal(body, x.RequestBody);
        Assert.Equal(0, h.TotalDrops);
    }

    [Fact]
    public void An_unknown_frame_type_is_ignored()
    {
        using var h = New();
        var c = Start(h);
        Exchange(h, c, 1, "/before");
        h.Request(c, Raw(0xfa, 0xff, 1, new byte[100]));
        h.Response(c, Raw(0x0b, 0, 0, new byte[10]));
        Exchange(h, c, 3, "/after");
        End(h, c);
        AssertCaptured(h, "/before");
        AssertCaptured(h, "/after");
    }

    // ---- frames of the wrong size ----

    [Theory]
    [InlineData(16385)]
    [InlineData(0xFFFFFF)]
    public void A_frame_longer_than_the_maximum_frame_size_is_counted_and_not_buffered(int length)
    {
        using var h = New();
        var c = Start(h);
        Exchange(h, c, 1, "/before");
        h.Request(c, Request(3, "POST", "/oversized", endStream: false));
        Feed(h, c, c.RequestDirection, Data(3, new byte[length]), piece: 65536);
        Exchange(h, c, 5, "/after");
        End(h, c);
        AssertCaptured(h, "/before");
        AssertOnly(h, "/before", "/after");
        AssertCounted(h, "frame of " + length);
    }

    public static TheoryData<string, bool, byte[], bool> WrongSizes => new()
    {
        // name, sent by the client, frame, a stream error (the connection goes on)
        { "SETTINGS of 7 bytes", true, Raw(4, 0, 0, new byte[7]), false },
        { "SETTINGS of 7 bytes from the server", false, Raw(4, 0, 0, new byte[7]), false },
        { "SETTINGS ACK with a payload", false, Raw(4, 1, 0, new byte[6]), false },
        { "SETTINGS on a stream", true, Raw(4, 0, 3, new byte[6]), false },
        { "WINDOW_UPDATE of 3 bytes", true, Raw(8, 0, 0, new byte[3]), false },
        { "WINDOW_UPDATE of 5 bytes", false, Raw(8, 0, 0, [0, 0, 1, 0, 0]), false },
        { "PING of 7 bytes", true, Raw(6, 0, 0, new byte[7]), false },
        { "RST_STREAM of 3 bytes", true, Raw(3, 0, 1, new byte[3]), false },
        { "GOAWAY of 7 bytes", false, Raw(7, 0, 0, new byte[7]), false },
        { "PRIORITY of 4 bytes", true, Raw(2, 0, 3, new byte[4]), true },
        { "PRIORITY of 6 bytes", true, Raw(2, 0, 3, new byte[6]), true },
    };

    [Theory]
    [MemberData(nameof(WrongSizes))]
    public void Frames_of_the_wrong_size_are_counted(string name, bool fromClient, byte[] frame, bool streamError)
    {
        using var h = New();
        var c = Start(h);
        Exchange(h, c, 1, "/before");
        h.Event(c, fromClient ? c.RequestDirection : c.ResponseDirection, frame);
        Exchange(h, c, 5, "/after");
        End(h, c);
        AssertCaptured(h, "/before");
        AssertOnly(h, "/before", "/after");
        AssertCounted(h, name);
        if (streamError) AssertCaptured(h, "/after");
    }

    // ---- frames that lie or are where they may not be ----

    public static TheoryData<string, bool, byte[]> ConnectionErrors => new()
    {
        { "DATA padding longer than the payload", true, Concat(Request(3, "POST", "/padded", endStream: false), Data(3, new byte[10], declaredPad: 200)) },
        { "DATA padding as long as the payload", true, Concat(Request(3, "POST", "/padded", endStream: false), Raw(0, 0x9, 3, [6, 1, 2, 3, 4, 5])) },
        { "DATA with PADDED and no pad length", true, Concat(Request(3, "POST", "/padded", endStream: false), Raw(0, 0x9, 3, [])) },
        { "HEADERS padding longer than the payload", true, Headers(3, Hpack.Request("GET", "/padded"), declaredPad: 250) },
        { "HEADERS with PRIORITY shorter than 5", true, Raw(1, 0x25, 3, [0, 0, 0]) },
        { "PUSH_PROMISE padding longer than the payload", false, PushPromise(1, 2, Hpack.Request("GET", "/pushed"), declaredPad: 250) },
        { "HEADERS on stream 0", true, Headers(0, Hpack.Request("GET", "/zero")) },
        { "DATA on stream 0", true, Data(0, "zero") },
        { "DATA on a stream never opened", true, Data(7, "who?", endStream: true) },
        { "DATA on a stream never opened, from the server", false, Data(9, "who?", endStream: true) },
        { "CONTINUATION without HEADERS", true, Continuation(3, Hpack.Request("GET", "/cont")) },
        { "CONTINUATION after a complete block", true, Concat(Headers(3, Hpack.Request("GET", "/cont"), endStream: true), Continuation(3, new Hpack().Literal("x-a", "b"))) },
        { "HEADERS of another stream inside a header block", true,
            Concat(Headers(3, Hpack.Request("GET", "/interrupted"), endHeaders: false), Headers(5, Hpack.Request("GET", "/interloper")), Continuation(3, new Hpack().Literal("x-a", "b"))) },
        { "CONTINUATION of another stream", true,
            Concat(Headers(3, Hpack.Request("GET", "/interrupted"), endHeaders: false), Continuation(5, new Hpack().Literal("x-a", "b"))) },
        { "a header block that refers to a dynamic entry that does not exist", true, Headers(3, new Hpack().Indexed(3).Indexed(7).Literal(4, "/x").Indexed(200)) },
        { "a header block cut inside a string", true, Headers(3, new Hpack().Indexed(2).Indexed(7).Raw(0x44, 0x7f, 0x10, (byte)'/')) },
        { "a size update above the setting", true, Headers(3, new Hpack().SizeUpdate(1 << 20).Indexed(2).Indexed(7).Literal(4, "/x")) },
        { "a size update after a field", true, Headers(3, new Hpack().Indexed(2).SizeUpdate(100).Indexed(7).Literal(4, "/x")) },
        { "an integer that overflows", true, Headers(3, new Hpack().Indexed(2).Raw(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f)) },
        { "a server opening an odd stream", false, Response(3, 200) },
        { "a client reusing a closed stream", true, Request(1, "GET", "/again") },
    };

    [Theory]
    [MemberData(nameof(ConnectionErrors))]
    public void Frames_that_break_the_connection_are_counted_and_emit_nothing_wrong(string name, bool fromClient, byte[] frames)
    {
        using var h = New();
        var c = Start(h);
        Exchange(h, c, 1, "/before");
        h.Event(c, fromClient ? c.RequestDirection : c.ResponseDirection, frames);
        Exchange(h, c, 11, "/after");
        End(h, c);
        AssertCaptured(h, "/before");
        AssertOnly(h, "/before", "/after");
        AssertCounted(h, name);
    }

    public static TheoryData<string, byte[]> MalformedRequests => new()
    {
        { "no :path", new Hpack().Indexed(2).Indexed(7).Literal(1, "a") },
        { "no :method", new Hpack().Indexed(7).Literal(4, "/m").Literal(1, "a") },
        { "an unknown pseudo-header", new Hpack().Indexed(2).Indexed(7).Literal(4, "/m").Literal(":color", "red") },
        { "a pseudo-header after a field", new Hpack().Indexed(2).Indexed(7).Literal("x-a", "1").Literal(4, "/m") },
        { "a response pseudo-header in a request", new Hpack().Indexed(2).Indexed(7).Literal(4, "/m").Indexed(8) },
        { "an upper-case name", new Hpack().Indexed(2).Indexed(7).Literal(4, "/m").Literal("X-Upper", "1") },
        { "a connection-specific field", new Hpack().Indexed(2).Indexed(7).Literal(4, "/m").Literal("connection", "keep-alive") },
        { ":path twice", new Hpack().Indexed(2).Indexed(7).Literal(4, "/m").Literal(4, "/n") },
    };

    /// <summary>A malformed request is a stream error (RFC 9113 §8.1.1): its stream is lost and
    /// counted, the others go on. (Its block is still decoded: the table stays in step.)</summary>
    [Theory]
    [MemberData(nameof(MalformedRequests))]
    public void A_malformed_request_is_counted_and_the_other_streams_go_on(string name, byte[] block)
    {
        using var h = New();
        var c = Start(h);
        Exchange(h, c, 1, "/before");
        h.Request(c, Headers(3, block, endStream: true));
        h.Response(c, RstStream(3, 1));
        Exchange(h, c, 5, "/after");
        End(h, c);
        AssertCaptured(h, "/before");
        AssertCaptured(h, "/after");
        AssertOnly(h, "/before", "/after");
        AssertCounted(h, name);
    }

    // ---- header blocks without end, and table bombs ----

    /// <summary>A header block that never ends: megabytes of CONTINUATION without END_HEADERS.</summary>
    [Fact]
    public void An_endless_header_block_stays_within_the_header_cap()
    {
        using var h = New();
        var c = Start(h);
        Exchange(h, c, 1, "/before");
        h.Request(c, Headers(3, Hpack.Request("GET", "/endless"), endHeaders: false));
        var field = new Hpack().Literal("x-more", new string('m', 1000)).ToArray();
        var fragment = Concat(Enumerable.Repeat(field, 16).ToArray());
        for (var i = 0; i < 256; i++) // 4 MiB
            Feed(h, c, c.RequestDirection, Continuation(3, fragment, endHeaders: false), piece: 5000, bound: HeaderCap + 16 * 1024 + 9);
        End(h, c);
        AssertCaptured(h, "/before");
        AssertOnly(h, "/before");
        AssertCounted(h, "endless header block");
    }

    /// <summary>A header block over the cap that does end is the collector's limit, not an error of
    /// the peers: that stream is counted and the next one comes out.</summary>
    [Fact]
    public void A_header_block_over_the_cap_is_counted_and_the_next_stream_comes_out()
    {
        using var h = New();
        var c = Start(h);
        Exchange(h, c, 1, "/before");
        var block = new Hpack().Indexed(2).Indexed(7).Literal(4, "/huge").Literal(1, "a");
        for (var i = 0; i < 300; i++) block.Literal($"x-huge-{i}", new string('h', 1000));
        Feed(h, c, c.RequestDirection, HeaderFrames(3, block.ToArray(), endStream: true), piece: 3000, bound: HeaderCap + 16 * 1024 + 9);
        h.Response(c, Response(3, 431));
        Exchange(h, c, 5, "/after");
        End(h, c);
        AssertCaptured(h, "/before");
        AssertCaptured(h, "/after");
        AssertOnly(h, "/before", "/after");
        AssertCounted(h, "header block over the cap");
    }

    /// <summary>SETTINGS_HEADER_TABLE_SIZE = 2^31-1, then the encoder takes it and fills its table
    /// with megabytes of entries: the collector's table stays bounded (an entry inserted megabytes
    /// ago can no longer be referenced), and what it could not decode is counted.</summary>
    [Fact]
    public void A_table_size_bomb_over_many_streams_keeps_memory_bounded()
    {
        using var h = New();
        var c = Start(h, true, (H2Setting.HeaderTableSize, int.MaxValue));
        var value = new string('t', 4000);
        var inserts = 0;
        for (uint i = 0; i < 100; i++)
        {
            var stream = 1 + 2 * i;
            var block = new Hpack();
            if (i == 0) block.SizeUpdate(int.MaxValue);
            block.Indexed(3).Indexed(7).Literal(4, $"/bomb/{i}").Literal(1, "a");
            for (var k = 0; k < 10; k++, inserts++) block.Literal($"x-bomb-{i}-{k}", value, HpackIndexing.Incremental);
            Feed(h, c, c.RequestDirection, Concat(HeaderFrames(stream, block.ToArray()), Data(stream, $"ping /bomb/{i}", endStream: true)), bound: BombBound);
            Feed(h, c, c.ResponseDirection, Concat(Response(stream, 200, endStream: false), Data(stream, $"pong /bomb/{i}", endStream: true)), bound: BombBound);
        }
        // the oldest entry, 4 MB of entries ago
        var probe = new Hpack().Indexed(2).Indexed(7).Literal(4, "/probe").Literal(1, "a").Indexed(62 + inserts - 1);
        Feed(h, c, c.RequestDirection, Concat(Headers(201, probe.ToArray()), Data(201, "ping /probe", endStream: true)), bound: BombBound);
        Feed(h, c, c.ResponseDirection, Concat(Response(201, 200, endStream: false), Data(201, "pong /probe", endStream: true)), bound: BombBound);
        End(h, c);
        // it may come out without that field (counted), never with it: its value went by megabytes ago
        Assert.DoesNotContain(h.Exchanges, x => x.Target == "/probe" && x.RequestHeaders.Any(kv => kv.Key == "x-bomb-0-0"));
        AssertOnly(h, [.. Enumerable.Range(0, 100).Select(i => $"/bomb/{i}"), "/probe"]);
        foreach (var x in h.Exchanges.Where(x => x.Target != "/probe"))
        {
            var i = x.Target["/bomb/".Length..];
            Assert.Equal([("host", "a"), .. Enumerable.Range(0, 10).Select(k => ($"x-bomb-{i}-{k}", value))],
                x.RequestHeaders.Select(kv => (kv.Key, kv.Value)));
        }
        AssertCounted(h, "table size bomb");
    }

    [Fact]
    public void A_table_size_bomb_in_one_header_block_keeps_memory_bounded()
    {
        using var h = New();
        var c = Start(h, true, (H2Setting.HeaderTableSize, int.MaxValue));
        var block = new Hpack().SizeUpdate(int.MaxValue).Indexed(3).Indexed(7).Literal(4, "/bomb").Literal(1, "a");
        for (var k = 0; k < 500; k++) block.Literal($"x-bomb-{k}", new string('b', 4000), HpackIndexing.Incremental);
        Feed(h, c, c.RequestDirection, HeaderFrames(1, block.ToArray(), maxFrame: 16000), bound: BombBound);
        Feed(h, c, c.RequestDirection, Data(1, "ping /bomb", endStream: true), bound: BombBound);
        Feed(h, c, c.ResponseDirection, Concat(Response(1, 200, endStream: false), Data(1, "pong /bomb", endStream: true)), bound: BombBound);
        // every entry of that block, referenced
        var again = new Hpack().Indexed(3).Indexed(7).Literal(4, "/again").Literal(1, "a");
        for (var k = 0; k < 500; k++) again.Indexed(62 + k);
        Feed(h, c, c.RequestDirection, HeaderFrames(3, again.ToArray(), endStream: true), bound: BombBound);
        Feed(h, c, c.ResponseDirection, Response(3, 200), bound: BombBound);
        End(h, c);
        Assert.DoesNotContain(h.Exchanges, x => x.Target == "/bomb"); // its header list is far over the cap
        // /again may come out with what the collector's bounded table still held: never more than the cap
        foreach (var x in h.Exchanges.Where(x => x.Target == "/again"))
            Assert.InRange(x.RequestHeaders.Where(kv => kv.Key.StartsWith("x-bomb-")).Sum(kv => kv.Value.Length), 0, HeaderCap);
        AssertCounted(h, "table size bomb in one block");
    }

    // ---- random input ----

    private static TestConn StartRandom(Harness h, Random r)
    {
        var c = h.Open(5, r.Next(2) == 0);
        h.Request(c, ClientStart());
        h.Response(c, ServerStart());
        if (r.Next(2) == 0) Exchange(h, c, 1, "/before");
        return c;
    }

    [Fact]
    public void Random_bytes_after_a_valid_preface_never_throw_and_stay_bounded()
    {
        Prop.ForAll(Gen.Choose(0, int.MaxValue).ToArbitrary(), seed =>
        {
            var r = new Random(seed);
            using var h = New();
            var c = StartRandom(h, r);
            for (var i = r.Next(1, 30); i > 0; i--)
            {
                var bytes = new byte[r.Next(1, r.Next(2) == 0 ? 32 : 3000)];
                r.NextBytes(bytes);
                Feed(h, c, r.Next(2) == 0 ? c.RequestDirection : c.ResponseDirection, bytes, piece: r.Next(1, 2000));
            }
            End(h, c);
            AssertBefore(h);
        }).Check(Config.QuickThrowOnFailure.WithMaxTest(3000));
    }

    /// <summary>Frames with random headers (type, flags, stream, a length that may lie) over random
    /// payloads or random HPACK representations: further in than random bytes get.</summary>
    [Fact]
    public void Random_frames_after_a_valid_preface_never_throw_and_stay_bounded()
    {
        Prop.ForAll(Gen.Choose(0, int.MaxValue).ToArbitrary(), seed =>
        {
            var r = new Random(seed);
            using var h = New();
            var c = StartRandom(h, r);
            for (var i = r.Next(1, 40); i > 0; i--)
            {
                var payload = r.Next(3) == 0 ? RandomBlock(r) : new byte[r.Next(0, r.Next(2) == 0 ? 16 : 2000)];
                if (payload.Length > 0 && r.Next(3) != 0 && payload.Length < 16) r.NextBytes(payload);
                else if (r.Next(4) == 0) r.NextBytes(payload);
                var type = (byte)(r.Next(5) == 0 ? r.Next(256) : r.Next(10));
                var flags = (byte)(r.Next(3) == 0 ? r.Next(256) : new[] { 0, 1, 4, 5, 8, 0x20, 0x2d }[r.Next(7)]);
                var stream = (uint)(r.Next(4) == 0 ? r.Next() : r.Next(0, 12));
                int? declared = r.Next(8) == 0 ? r.Next(0, 1 << 24) : null;
                var frame = Raw(type, flags, stream, payload, declared);
                Feed(h, c, r.Next(3) != 0 ? c.RequestDirection : c.ResponseDirection, frame, piece: r.Next(1, 3000));
            }
            End(h, c);
            AssertBefore(h);
        }).Check(Config.QuickThrowOnFailure.WithMaxTest(3000));
    }

    /// <summary>The valid exchange before the noise, when it comes out, is right (random frames can
    /// make a valid exchange of their own now and then: those are not checked).</summary>
    private static void AssertBefore(Harness h)
    {
        if (h.Exchanges.Any(x => x.Target == "/before")) AssertCaptured(h, "/before");
    }

    /// <summary>A header block of random representations, indices and sizes (mostly near the edges).</summary>
    private static byte[] RandomBlock(Random r)
    {
        var b = new Hpack();
        for (var n = r.Next(0, 12); n > 0; n--)
        {
            int Index() => r.Next(4) switch { 0 => 0, 1 => r.Next(1, 62), 2 => r.Next(62, 80), _ => r.Next() };
            string Text() => new string((char)r.Next('a', 'z' + 1), r.Next(4) == 0 ? r.Next(0, 5000) : r.Next(0, 10));
            switch (r.Next(7))
            {
                case 0: b.Indexed(Index()); break;
                case 1: b.Literal(Index(), Text(), (HpackIndexing)new byte[] { 0x40, 0x00, 0x10 }[r.Next(3)]); break;
                case 2: b.Literal(Text(), Text(), (HpackIndexing)new byte[] { 0x40, 0x00, 0x10 }[r.Next(3)]); break;
                case 3: b.SizeUpdate(r.Next(3) == 0 ? int.MaxValue : r.Next(0, 70000)); break;
                case 4: b.Raw((byte)r.Next(256)); break;
                case 5: b.Header(":path", "/r"); break;
                default: b.Header(":method", "GET"); break;
            }
        }
        return b.ToArray();
    }
}
