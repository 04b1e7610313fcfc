using FsCheck;
using FsCheck.Fluent;
using System.IO.Compression;
using System.Text;
using System.Text.Json;

namespace Collector.Tests.Http;

/// <summary>Bodies and fields as the processor receives them: content-codings decoded (and said so),
/// binary bodies in base64 (marked), cuts marked, every value a JSON string.</summary>
public sealed class OutputTests
{
    private static readonly string Json = "{\"users\":[" + string.Join(",", Enumerable.Range(0, 200).Select(i => $"{{\"id\":{i},\"name\":\"user {i}\"}}")) + "]}";

    private static byte[] Compress(string coding, byte[] data)
    {
        using var ms = new MemoryStream();
        using (Stream s = coding switch
               {
                   "gzip" => new GZipStream(ms, CompressionLevel.Optimal),
                   "deflate" => new ZLibStream(ms, CompressionLevel.Optimal),
                   "raw-deflate" => new DeflateStream(ms, CompressionLevel.Optimal),
                   "br" => new BrotliStream(ms, CompressionLevel.Optimal),
                   _ => throw new ArgumentException(coding),
               })
            s.Write(data);
        return ms.ToArray();
    }

    private static Captured Exchange(Harness h, byte[] responseHead, byte[] body, string requestHead = "GET /r HTTP/1.1\r\nHost: a\r\n\r\n")
    {
        var c = h.Open((uint)(5 + h.Exchanges.Count));
        h.Request(c, requestHead);
        h.Response(c, responseHead.Concat(body).ToArray());
        return h.Exchanges[^1];
    }

    [Theory]
    [InlineData("gzip", "gzip")]
    [InlineData("x-gzip", "gzip")]
    [InlineData("deflate", "deflate")]
    [InlineData("raw-deflate", "deflate")]
    [InlineData("br", "br")]
    public void Content_encodings_are_decoded_and_the_headers_say_so(string how, string coding)
    {
        using var h = new Harness();
        var body = Compress(how == "x-gzip" ? "gzip" : how, Encoding.UTF8.GetBytes(Json));
        var wire = how is "raw-deflate" ? "deflate" : how;
        var x = Exchange(h, Harness.Bytes($"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: {wire}\r\nContent-Length: {body.Length}\r\n\r\n"), body);
        Assert.Equal(Json, x.Akto("responsePayload"));
        var headers = x.AktoHeaders("responseHeaders");
        Assert.False(headers.ContainsKey("content-encoding"));
        Assert.Equal(coding, headers["x-collector-decoded"]);
        Assert.Equal(body.Length.ToString(), headers["content-length"]); // as it was on the wire
        Assert.False(headers.ContainsKey("x-collector-body-truncated"));
        Assert.Equal(1, h.Metrics.BodiesDecoded.Value);
    }

    [Fact]
    public void A_chunked_gzip_request_body_is_decoded_too()
    {
        using var h = new Harness();
        var body = Compress("gzip", Encoding.UTF8.GetBytes(Json));
        var c = h.Open(5);
        var head = $"POST /up HTTP/1.1\r\nHost: a\r\nContent-Encoding: GZIP\r\nTransfer-Encoding: chunked\r\n\r\n{body.Length:x}\r\n";
        h.Request(c, Harness.Bytes(head).Concat(body).Concat(Harness.Bytes("\r\n0\r\n\r\n")).ToArray());
        h.Response(c, "HTTP/1.1 204 No Content\r\n\r\n");
        var x = Assert.Single(h.Exchanges);
        Assert.Equal(Json, x.Akto("requestPayload"));
        Assert.Equal("gzip", x.AktoHeaders("requestHeaders")["x-collector-decoded"]);
    }

    [Fact]
    public void A_body_that_does_not_decode_is_sent_as_it_came_with_its_coding()
    {
        using var h = new Harness();
        var junk = new byte[] { 0x1f, 0x8b, 8, 0, 1, 2, 3, 4, 0xff, 0xfe, 0xfd, 0x00, 0x80 };
        var x = Exchange(h, Harness.Bytes($"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: {junk.Length}\r\n\r\n"), junk);
        var headers = x.AktoHeaders("responseHeaders");
        Assert.Equal("gzip", headers["content-encoding"]);
        Assert.Equal("base64", headers["x-collector-body-encoding"]);
        Assert.Equal(junk, Convert.FromBase64String(x.Akto("responsePayload")));
        Assert.Equal(1, h.Metrics.BodyDecodeFailures.Value);
    }

    [Fact]
    public void A_decompression_bomb_stops_at_the_cap_and_is_marked()
    {
        using var h = new Harness(maxBodyBytes: 64 * 1024);
        var bomb = Compress("gzip", new byte[50 << 20]); // 50 MiB of zeros, about 50 KiB compressed
        Assert.True(bomb.Length < 64 * 1024);
        var x = Exchange(h, Harness.Bytes($"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Encoding: gzip\r\nContent-Length: {bomb.Length}\r\n\r\n"), bomb);
        var payload = x.Akto("responsePayload");
        Assert.Equal(64 * 1024, payload.Length);
        Assert.All(payload, ch => Assert.Equal('\0', ch));
        Assert.StartsWith("cap; kept=65536;", x.AktoHeaders("responseHeaders")["x-collector-body-truncated"]);
    }

    [Fact]
    public void A_cut_compressed_body_decodes_as_far_as_it_goes()
    {
        using var h = new Harness(maxBodyBytes: 2000);
        var text = string.Concat(Enumerable.Range(0, 3000).Select(i => (char)('a' + i % 26) + (i % 7 == 0 ? " " : "")));
        var gz = Compress("gzip", new Random(3).GetItems<byte>(Encoding.ASCII.GetBytes(text), 20000).ToArray());
        var x = Exchange(h, Harness.Bytes($"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Encoding: gzip\r\nContent-Length: {gz.Length}\r\n\r\n"), gz);
        var headers = x.AktoHeaders("responseHeaders");
        Assert.Equal("gzip", headers["x-collector-decoded"]);
        Assert.StartsWith("cap;", headers["x-collector-body-truncated"]);
        Assert.True(x.Akto("responsePayload").Length > 0);
        Assert.DoesNotContain("x-collector-body-encoding", headers.Keys);
    }

    [Fact]
    public void Binary_bodies_are_base64_and_marked()
    {
        using var h = new Harness();
        var png = new byte[] { 0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0x0d, 0x49, 0x48, 0x44, 0x52, 0xff, 0xd8 };
        var x = Exchange(h, Harness.Bytes($"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: {png.Length}\r\n\r\n"), png);
        Assert.Equal(png, Convert.FromBase64String(x.Akto("responsePayload")));
        Assert.Equal("base64", x.AktoHeaders("responseHeaders")["x-collector-body-encoding"]);
        Assert.False(x.AktoHeaders("requestHeaders").ContainsKey("x-collector-body-encoding"));
    }

    [Fact]
    public void Text_is_sent_as_text_exactly_with_every_character_escaped_correctly()
    {
        using var h = new Harness();
        var text = "quote \" backslash \\ slash / tab \t cr \r lf \n nul \0 bell \u0007 del \u007f é 日本 🙂 \u2028 <script>&amp;";
        var bytes = Encoding.UTF8.GetBytes(text);
        var x = Exchange(h, Harness.Bytes($"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {bytes.Length}\r\n\r\n"), bytes);
        Assert.Equal(text, x.Akto("responsePayload"));
        Assert.False(x.AktoHeaders("responseHeaders").ContainsKey("x-collector-body-encoding"));
    }

    [Fact]
    public void Json_escaping_round_trips_any_text_at_any_length()
    {
        // long enough for the 32-byte blocks, with escapes at every position in a block
        const string alphabet = "ab\"\\\n\r\t\u0001\u001f\u007f é日🙂{}:,/<>&'";
        var gen = FsCheck.Fluent.Gen.Zip(FsCheck.Fluent.Gen.Choose(0, 700), FsCheck.Fluent.Gen.Choose(0, int.MaxValue));
        FsCheck.Fluent.Prop.ForAll(FsCheck.Fluent.Arb.ToArbitrary(gen), t =>
        {
            var r = new Random(t.Item2);
            var sb = new StringBuilder();
            while (sb.Length < t.Item1)
            {
                var c = alphabet[r.Next(alphabet.Length)];
                if (char.IsSurrogate(c)) continue; // the emoji is added whole below
                sb.Append(r.Next(10) == 0 ? "\ud83d\ude42" : c.ToString());
            }
            var text = sb.ToString();
            var buffer = new Collector.Output.MessageBuffer();
            Collector.Output.AktoMessage.EscapeForBench(buffer, Encoding.UTF8.GetBytes(text));
            Assert.Equal(text, JsonDocument.Parse(buffer.WrittenMemory).RootElement.GetString());
            // nested (a string in the headers string): one parse gives the once-escaped string
            var nested = new Collector.Output.MessageBuffer();
            Collector.Output.AktoMessage.EscapeForBench(nested, Encoding.UTF8.GetBytes(text), nested: true);
            var once = JsonDocument.Parse("\""u8.ToArray().Concat(nested.WrittenSpan.ToArray()).Concat("\""u8.ToArray()).ToArray()).RootElement.GetString()!;
            Assert.Equal(text, JsonDocument.Parse(once).RootElement.GetString());
        }).Check(FsCheck.Config.QuickThrowOnFailure.WithMaxTest(500)); // FsCheck.CheckExtensions
    }

    [Fact]
    public void Bytes_are_plain_only_when_every_one_is_printable_ascii_other_than_quote_and_backslash()
    {
        // IsPlain decides whether a field or body is copied without escaping: it reads 32, 16 or
        // one byte at a time, the last block overlapping. Every length up to 100, one odd byte at
        // every position, each kind of odd byte (control, quote, backslash, non-ASCII, the
        // signed-compare edges 0x1f/0x80/0xff), and DEL, which JSON lets through.
        byte[] odd = [0x00, 0x09, 0x0a, 0x1f, (byte)'"', (byte)'\\', 0x80, 0xc3, 0xff];
        for (var length = 0; length <= 100; length++)
        {
            var bytes = Enumerable.Range(0, length).Select(i => (byte)(0x20 + i % 95)).Where(b => b is not ((byte)'"' or (byte)'\\')).ToArray();
            bytes = [.. bytes, .. Enumerable.Repeat((byte)'a', length - bytes.Length)];
            Assert.True(Collector.Output.AktoMessage.IsPlainForTests(bytes), $"length {length}");
            for (var at = 0; at < length; at++)
            {
                var saved = bytes[at];
                foreach (var b in odd)
                {
                    bytes[at] = b;
                    Assert.False(Collector.Output.AktoMessage.IsPlainForTests(bytes), $"length {length}, 0x{b:x2} at {at}");
                }
                bytes[at] = 0x7f;
                Assert.True(Collector.Output.AktoMessage.IsPlainForTests(bytes), $"length {length}, DEL at {at}");
                bytes[at] = saved;
            }
        }
    }

    [Fact]
    public void Header_values_round_trip_through_the_headers_string_whatever_they_hold()
    {
        // The headers object is a JSON string inside the message: each value is escaped twice on
        // the way out. Values with quotes, backslashes, tabs, Latin-1 and UTF-8, at lengths that
        // cross the 32-byte blocks, come back exactly after two parses.
        const string alphabet = "ab\"\\\t é日{}:,/";
        var gen = FsCheck.Fluent.Gen.Zip(FsCheck.Fluent.Gen.Choose(1, 300), FsCheck.Fluent.Gen.Choose(0, int.MaxValue));
        FsCheck.Fluent.Prop.ForAll(FsCheck.Fluent.Arb.ToArbitrary(gen), t =>
        {
            var r = new Random(t.Item2);
            var sb = new StringBuilder("v");
            while (sb.Length < t.Item1) sb.Append(alphabet[r.Next(alphabet.Length)]);
            var value = sb.ToString().TrimEnd(' ', '\t') + "z";
            var latin1 = r.Next(4) == 0;
            using var h = new Harness();
            var c = h.Open(9);
            var head = Encoding.UTF8.GetBytes("GET /r HTTP/1.1\r\nHost: a\r\nX-Value: ")
                .Concat(latin1 ? Encoding.Latin1.GetBytes(value.Replace('日', 'x')) : Encoding.UTF8.GetBytes(value))
                .Concat("\r\n\r\n"u8.ToArray()).ToArray();
            h.Request(c, head);
            h.Response(c, "HTTP/1.1 204 No Content\r\nX-Echo: \"quoted\" \\ back\r\n\r\n");
            var x = h.Exchanges[^1];
            Assert.Equal(latin1 ? value.Replace('日', 'x') : value, x.AktoHeaders("requestHeaders")["x-value"]);
            Assert.Equal("\"quoted\" \\ back", x.AktoHeaders("responseHeaders")["x-echo"]);
        }).Check(FsCheck.Config.QuickThrowOnFailure.WithMaxTest(300));
    }

    [Fact]
    public void Many_fields_plain_and_not_mixed_and_repeated_come_back_exactly()
    {
        // The headers string copies plain fields in one piece and escapes the others: a field's
        // kind is found by one scan over all fields' bytes. Up to 80 fields (past the 64 that scan
        // covers), names drawn from a few so that some repeat (joined), values plain or holding a
        // quote, a backslash, a tab or UTF-8, at every place in the list.
        string[] names = ["A", "X-Tag", "ETag", "x-tag", "Accept", "X-Long-Field-Name-For-A-Block"];
        string[] values = ["plain", "\"quoted\"", "back\\slash", "tab\there", "caf\u00e9", "v", new string('p', 40), "a\"b" + new string('q', 33)];
        var gen = FsCheck.Fluent.Gen.Zip(FsCheck.Fluent.Gen.Choose(1, 80), FsCheck.Fluent.Gen.Choose(0, int.MaxValue));
        FsCheck.Fluent.Prop.ForAll(FsCheck.Fluent.Arb.ToArbitrary(gen), t =>
        {
            var r = new Random(t.Item2);
            var fields = Enumerable.Range(0, t.Item1).Select(_ => (Name: names[r.Next(names.Length)], Value: values[r.Next(values.Length)])).ToList();
            var expected = new Dictionary<string, string>();
            foreach (var (name, value) in fields)
                expected[name.ToLowerInvariant()] = expected.TryGetValue(name.ToLowerInvariant(), out var had) ? had + ", " + value : value;
            expected["host"] = "a";
            using var h = new Harness();
            var c = h.Open(9);
            h.Request(c, Encoding.UTF8.GetBytes("GET /r HTTP/1.1\r\nHost: a\r\n" + string.Concat(fields.Select(f => $"{f.Name}: {f.Value}\r\n")) + "\r\n"));
            h.Response(c, "HTTP/1.1 204 No Content\r\n\r\n");
            var got = h.Exchanges[^1].AktoHeaders("requestHeaders");
            Assert.Equal(expected.OrderBy(kv => kv.Key), got.OrderBy(kv => kv.Key));
        }).Check(FsCheck.Config.QuickThrowOnFailure.WithMaxTest(300));
    }

    [Fact]
    public void The_fields_after_the_payloads_follow_each_exchange_s_connection_identity_and_time()
    {
        // Addresses, identity, direction, pid, fd and process name are made once per connection
        // and copied: each exchange must still carry its own, whatever came before it.
        using var h = new Harness();
        var server = h.Open(7, tgid: 41, comm: "srv");
        var client = h.Open(8, tracedIsServer: false, tgid: 42, comm: "cli");
        h.Request(server, "GET /a HTTP/1.1\r\nHost: a\r\n\r\n");
        h.Response(server, "HTTP/1.1 204 No Content\r\n\r\n");
        h.Request(client, "GET /b HTTP/1.1\r\nHost: b\r\n\r\n");
        h.Response(client, "HTTP/1.1 204 No Content\r\n\r\n");
        h.Request(server, "GET /c HTTP/1.1\r\nHost: a\r\n\r\n");
        h.Response(server, "HTTP/1.1 204 No Content\r\n\r\n");
        Assert.Equal(3, h.Exchanges.Count);
        foreach (var (x, fd, pid, name, direction, ip, dest) in new[]
                 {
                     (h.Exchanges[0], "7", "41", "srv", "1", "10.0.0.2:40007", "10.0.0.1:8080"),
                     (h.Exchanges[1], "8", "42", "cli", "2", "10.0.0.2:40008", "10.0.0.1:8080"),
                     (h.Exchanges[2], "7", "41", "srv", "1", "10.0.0.2:40007", "10.0.0.1:8080"),
                 })
        {
            Assert.Equal(fd, x.Akto("socket_id"));
            Assert.Equal(pid, x.Akto("process_id"));
            Assert.Equal(name, x.Akto("process_name"));
            Assert.Equal(direction, x.Akto("direction"));
            Assert.Equal(ip, x.Akto("ip"));
            Assert.Equal(dest, x.Akto("destIp"));
            Assert.Equal("1764000000", x.Akto("time"));
            Assert.Equal("1000000", x.Akto("akto_account_id"));
        }

        // the same exchange written for another identity and time: the copied part is made again
        var c = h.Open(9);
        h.Request(c, "GET /d HTTP/1.1\r\nHost: d\r\n\r\n");
        h.Inspect = x =>
        {
            var buffer = new Collector.Output.MessageBuffer();
            foreach (var (account, seconds) in new[] { ("111", 5L), ("222", 6L), ("111", 7L) })
            {
                buffer.ResetWrittenCount();
                Collector.Output.AktoMessage.Write(buffer, x, new Collector.Output.AktoIdentity(account, "0", "ds-" + account, []), seconds, 1000);
                var m = JsonDocument.Parse(buffer.WrittenMemory).RootElement;
                Assert.Equal(account, m.GetProperty("akto_account_id").GetString());
                Assert.Equal("ds-" + account, m.GetProperty("daemonset_id").GetString());
                Assert.Equal(seconds.ToString(), m.GetProperty("time").GetString());
                Assert.Equal("10.0.0.2:40009", m.GetProperty("ip").GetString());
            }
        };
        h.Response(c, "HTTP/1.1 204 No Content\r\n\r\n");
        Assert.Equal(4, h.Exchanges.Count);
    }

    [Fact]
    public void Host_strings_are_those_decoding_makes_whatever_shares_their_slot()
    {
        // Host values are kept as strings in a small table per thread: 500 distinct values (more
        // than its slots, so they collide and replace each other), UTF-8 and Latin-1, read in a
        // shuffled order three times, each equal to what decoding the bytes gives.
        var r = new Random(7);
        var hosts = Enumerable.Range(0, 500).Select(i => i % 7 == 0
            ? Encoding.Latin1.GetBytes($"h\u00e9{i}.example:80")
            : Encoding.UTF8.GetBytes(i % 5 == 0 ? $"\u65e5{i}.example" : $"host-{i}.example:{8000 + i}")).ToArray();
        for (var round = 0; round < 3; round++)
            foreach (var bytes in hosts.OrderBy(_ => r.Next()))
                Assert.Equal(Collector.Http.HttpText.Decode(bytes), Collector.Http.HostStrings.Get(bytes));
        Assert.Same(Collector.Http.HostStrings.Get(hosts[1]), Collector.Http.HostStrings.Get(hosts[1].ToArray()));
    }

    [Fact]
    public void A_cap_inside_a_multibyte_character_drops_the_partial_character()
    {
        using var h = new Harness(maxBodyBytes: 10);
        var bytes = Encoding.UTF8.GetBytes("123456789é and more");
        var x = Exchange(h, Harness.Bytes($"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {bytes.Length}\r\n\r\n"), bytes);
        Assert.Equal("123456789", x.Akto("responsePayload"));
        Assert.Equal($"cap; kept=9; wire={bytes.Length}", x.AktoHeaders("responseHeaders")["x-collector-body-truncated"]);
    }

    [Fact]
    public void Every_field_of_the_akto_message_is_a_string()
    {
        using var h = new Harness();
        var x = Exchange(h, Harness.Bytes("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"), [],
            "DELETE /users/7?force=true HTTP/1.1\r\nHost: api.example\r\n\r\n");
        var m = x.Message;
        foreach (var p in m.EnumerateObject()) Assert.Equal(JsonValueKind.String, p.Value.ValueKind);
        Assert.Equal("DELETE", m.GetProperty("method").GetString());
        Assert.Equal("/users/7?force=true", m.GetProperty("path").GetString());
        Assert.Equal("HTTP/1.1", m.GetProperty("type").GetString());
        Assert.Equal("404", m.GetProperty("statusCode").GetString());
        Assert.Equal("404 Not Found", m.GetProperty("status").GetString());
        Assert.Equal("10.0.0.2:40005", m.GetProperty("ip").GetString());
        Assert.Equal("10.0.0.1:8080", m.GetProperty("destIp").GetString());
        Assert.Equal("1764000000", m.GetProperty("time").GetString());
        Assert.Equal("1", m.GetProperty("direction").GetString());
        Assert.Equal("100", m.GetProperty("process_id").GetString());
        Assert.Equal("5", m.GetProperty("socket_id").GetString());
        Assert.Equal("testproc", m.GetProperty("process_name").GetString());
        Assert.Equal("MIRRORING", m.GetProperty("source").GetString());
        Assert.Equal("false", m.GetProperty("is_pending").GetString());
        Assert.Equal("1000000", m.GetProperty("akto_account_id").GetString());
        Assert.Equal("0", m.GetProperty("akto_vxlan_id").GetString());
        Assert.Equal("true", m.GetProperty("enable_graph").GetString());
        Assert.Equal("", m.GetProperty("requestPayload").GetString());
        Assert.Equal(22, m.EnumerateObject().Count());
    }

    [Fact]
    public void A_message_built_by_hand_encodes_like_a_parsed_one()
    {
        // filters and tools build exchanges without the parser
        var request = new Collector.Http.HttpMessage { IsRequest = true, Method = "GET", Target = "/items?id=1", Version = "HTTP/1.1" };
        request.Headers.Add(new("Host", "api.example.com"));
        request.Headers.Add(new("X-Tag", "a"));
        request.Headers.Add(new("x-tag", "b"));
        var response = new Collector.Http.HttpMessage { StatusCode = 200, Reason = "OK", Version = "HTTP/1.1" };
        using var x = new Collector.Connections.HttpExchange
        {
            Connection = new Collector.Connections.ConnectionId(4121, 17, 0),
            Info = new Collector.Connections.ConnectionInfo(System.Net.IPAddress.Parse("10.0.0.9"), 8080,
                System.Net.IPAddress.Parse("10.0.0.7"), 51334, Collector.Events.ConnectionOrigin.Accept, "server"),
            Direction = 1,
            Source = Collector.Events.EventSource.Syscall,
            Request = request,
            Response = response,
        };
        Assert.Equal("api.example.com", request.Header("host"));
        Assert.Equal("a, b", request.Header("X-TAG"));
        Assert.Equal([("Host", "api.example.com"), ("X-Tag", "a"), ("x-tag", "b")], request.Headers.Select(kv => (kv.Key, kv.Value)));
        var buffer = new Collector.Output.MessageBuffer();
        Collector.Output.AktoMessage.Write(buffer, x, new Collector.Output.AktoIdentity("1", "0", "d", []), 1, 1000);
        var m = JsonDocument.Parse(buffer.WrittenMemory).RootElement;
        Assert.Equal("/items?id=1", m.GetProperty("path").GetString());
        Assert.Equal("200 OK", m.GetProperty("status").GetString());
        Assert.Equal("{\"Host\":\"api.example.com\",\"X-Tag\":\"a, b\"}", m.GetProperty("requestHeaders").GetString());
        Assert.Equal("10.0.0.7:51334", m.GetProperty("ip").GetString());
        var details = new Collector.Output.MessageBuffer();
        Assert.True(Collector.Output.AktoMessage.CollectionDetails(x, details));
        Assert.Equal("api.example.com|GET|/items?id=1", System.Text.Encoding.UTF8.GetString(details.WrittenSpan));
    }

    [Fact]
    public void A_status_line_without_a_reason_gives_the_code_alone()
    {
        using var h = new Harness();
        var x = Exchange(h, Harness.Bytes("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n"), []);
        Assert.Equal("200", x.Akto("status"));
        Assert.Equal("200", x.Akto("statusCode"));
    }
    [Fact]
    public void A_media_type_is_found_in_any_case_where_a_compare_at_every_place_finds_it()
    {
        // the search jumps to the places of the first byte (either case); the old form compared at each
        static bool EveryPlace(byte[] s, byte[] lower)
        {
            for (var i = 0; i + lower.Length <= s.Length; i++)
                if (Collector.Http.HttpText.EqualsLower(s.AsSpan(i, lower.Length), lower)) return true;
            return false;
        }
        string[] pieces = ["json", "JSON", "Json", "jso", "j", "son", "text/", "TEXT/", "xml", "x-www-form-urlencoded", "X-WWW-FORM", "application/",
            "; charset=utf-8", "+", " ", "\u00e9", "n", "J", "/"];
        byte[][] wanted = ["json"u8.ToArray(), "text/"u8.ToArray(), "xml"u8.ToArray(), "x-www-form-urlencoded"u8.ToArray(), "j"u8.ToArray(), "/"u8.ToArray()];
        var gen = FsCheck.Fluent.Gen.Choose(0, 8).SelectMany(n => FsCheck.Fluent.Gen.ArrayOf(FsCheck.Fluent.Gen.Elements(pieces), n));
        FsCheck.Fluent.Prop.ForAll(FsCheck.Fluent.Arb.ToArbitrary(gen), p =>
        {
            var s = Encoding.Latin1.GetBytes(string.Concat(p));
            foreach (var w in wanted)
                Assert.True(EveryPlace(s, w) == Collector.Output.BodyPlan.ContainsIgnoreCase(s, w), $"{w.Length}: {string.Concat(p)}");
        }).Check(FsCheck.Config.QuickThrowOnFailure.WithMaxTest(2000));
    }
}
