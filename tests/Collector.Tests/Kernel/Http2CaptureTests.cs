using System.Diagnostics;
using System.Text;
using System.Text.Json;
using Collector.Tests.Support;

namespace Collector.Tests.Kernel;

/// <summary>One collector for all of Http2CaptureTests (it takes seconds to start and to stop),
/// with nginx and the peer servers of tests/Peers started on first use. Each test tells its
/// traffic apart by a tag of its own in every path (or, for gRPC, in the messages).</summary>
public sealed class Http2Fixture : IAsyncLifetime
{
    private readonly Dictionary<string, PeerServer> _servers = new();
    private NginxH2? _nginx;

    public CollectorProcess Collector { get; private set; } = null!;
    public string CertDir { get; } = Repo.TempDir("h2-peers");

    public async Task InitializeAsync()
    {
        Tls.MakeSelfSigned(CertDir);
        Collector = await CollectorProcess.StartAsync(new Dictionary<string, string>
        {
            ["TRACE_COMMS"] = H2Peers.TraceComms,
            ["HTTP_MAX_BODY_BYTES"] = "2097152",
            ["KAFKA_MAX_MESSAGE_BYTES"] = "4000000",
        });
    }

    public NginxH2 Nginx
    {
        get { lock (_servers) return _nginx ??= new NginxH2(); }
    }

    /// <summary>A peer server ("python", "node", "grpc") in mode "h2c" or "tls".</summary>
    public PeerServer Server(string kind, string mode)
    {
        lock (_servers)
        {
            var key = kind + "-" + mode;
            if (_servers.TryGetValue(key, out var s)) return s;
            var cert = mode == "tls" ? CertDir : null;
            s = kind switch
            {
                "python" => PeerServer.Python(cert),
                "node" => PeerServer.Node(cert),
                "grpc" => PeerServer.Grpc(cert),
                _ => throw new ArgumentException(kind),
            };
            return _servers[key] = s;
        }
    }

    public async Task DisposeAsync()
    {
        if (Collector is not null) await Collector.DisposeAsync();
        foreach (var s in _servers.Values) s.Dispose();
        _nginx?.Dispose();
    }
}

/// <summary>HTTP/2 and gRPC capture against real peers (the HTTP/2 output contract): each
/// exchange is one Akto message per traced side, type "HTTP/2", pseudo-headers turned into
/// method, path and status, trailers merged into the response headers; gRPC as one message per
/// request/response message pair, each payload one uncompressed length-prefixed message.</summary>
[Collection("kernel")]
public sealed class Http2CaptureTests(Http2Fixture f) : IClassFixture<Http2Fixture>
{
    private CollectorProcess C => f.Collector;

    private static string NewTag() => Guid.NewGuid().ToString("N")[..12];

    private static string Url(string mode, int port) => $"{(mode == "tls" ? "https" : "http")}://127.0.0.1:{port}";

    private static Dictionary<string, string> H(params (string Name, string Value)[] fields) =>
        fields.ToDictionary(x => x.Name, x => x.Value);

    private Task<double> Dropped(string reason) => C.MetricAsync($"collector_http_dropped_total{{reason=\"{reason}\"}}");

    private Task<double> Started(string how) => C.MetricAsync($"collector_http2_connections_total{{start=\"{how}\"}}");

    /// <summary>What the collector did so far, for failure messages.</summary>
    private async Task<string> DiagnosticsAsync()
    {
        var all = C.Messages().ToList();
        var metrics = (await C.MetricsAsync()).Split('\n')
            .Where(l => !l.StartsWith('#') && (l.Contains("http2") || l.Contains("dropped") || l.Contains("exchanges")) && !l.EndsWith(" 0"));
        return $"{C.Status}; {all.Count} messages, {all.Count(m => m.Field("type") == "HTTP/2")} of type HTTP/2; the last ones:\n" +
            AktoFields.Describe(all.TakeLast(10)) + "\nmetrics:\n" + string.Join("\n", metrics);
    }

    /// <summary>The exchange of this path, seen once from each side (1: server, 2: client).</summary>
    private async Task<List<JsonElement>> BothSidesAsync(string path, TimeSpan? timeout = null)
    {
        var found = await C.WaitForAsync(m => m.Field("path") == path, 2, timeout);
        if (found.Count != 2)
            Assert.Fail($"expected {path} from both sides, got {found.Count}:\n{AktoFields.Describe(found)}\n{await DiagnosticsAsync()}");
        Assert.Single(found, m => m.Field("direction") == "1");
        Assert.Single(found, m => m.Field("direction") == "2");
        return found;
    }

    /// <summary>Checks the exchange of this path on each side; a failure says which side.</summary>
    private async Task EachSideAsync(string path, Action<JsonElement> check, TimeSpan? timeout = null)
    {
        foreach (var m in await BothSidesAsync(path, timeout))
        {
            try
            {
                check(m);
            }
            catch (Xunit.Sdk.XunitException e)
            {
                throw new Xunit.Sdk.XunitException($"{path}, direction {m.Field("direction")} ({m.Field("process_name")}): {e.Message}");
            }
        }
    }

    private static void AssertHttp2(JsonElement m, string method, string path, string? host, string status = "200")
    {
        Assert.Equal("HTTP/2", m.Field("type"));
        Assert.Equal(method, m.Field("method"));
        Assert.Equal(path, m.Field("path"));
        Assert.Equal(status, m.Field("statusCode"));
        Assert.Equal(status, m.Field("status"));
        var request = m.HeaderMap("requestHeaders");
        Assert.DoesNotContain(request.Keys, k => k.StartsWith(':'));
        Assert.DoesNotContain(m.HeaderMap("responseHeaders").Keys, k => k.StartsWith(':'));
        if (host is not null) Assert.Equal(host, request.GetValueOrDefault("host"));
    }

    private static void AssertHeaders(IReadOnlyDictionary<string, string>? expected, Dictionary<string, string> actual, string what)
    {
        foreach (var (k, v) in expected ?? new Dictionary<string, string>())
            Assert.True(actual.TryGetValue(k, out var got) && got == v, $"{what} {k}: expected \"{v}\", got \"{got}\"");
    }

    private static (string Out, string Err) Curl(params string[] args)
    {
        var psi = new ProcessStartInfo("curl") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var o = p.StandardOutput.ReadToEndAsync();
        var e = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromSeconds(60))) { p.Kill(true); throw new TimeoutException("curl " + string.Join(' ', args)); }
        p.WaitForExit();
        if (p.ExitCode != 0) throw new InvalidOperationException($"curl {string.Join(' ', args)} exited {p.ExitCode}: {e.Result}");
        return (o.Result, e.Result);
    }

    // ------------------------------------------------------------------------ a. curl and nginx

    [Theory]
    [InlineData("tls")]
    [InlineData("h2c")]
    public async Task Curl_and_nginx_over_http2_are_captured_from_both_sides(string mode)
    {
        var nginx = f.Nginx;
        var id = NewTag();
        var port = mode == "tls" ? nginx.TlsPort : nginx.H2cPort;
        var baseUrl = Url(mode, port);
        var http2 = mode == "tls" ? "--http2" : "--http2-prior-knowledge"; // TLS: ALPN h2; h2c: prior knowledge
        var small = "hello over HTTP/2\n";
        var text = string.Concat(Enumerable.Range(0, 1000).Select(i => $"line {i:D5} of a text that gzip shrinks\n"));
        var line = new string('x', 1023) + "\n";
        var big = string.Concat(Enumerable.Range(0, 1024).Select(i => $"{i:D6}" + line[6..]));
        Assert.Equal(1 << 20, big.Length);
        File.WriteAllText(Path.Combine(nginx.Www, $"small-{id}.txt"), small);
        File.WriteAllText(Path.Combine(nginx.Www, $"text-{id}.txt"), text);
        File.WriteAllText(Path.Combine(nginx.Www, $"big-{id}.txt"), big);
        var json = $$"""{"tag":"{{id}}","n":1}""";
        var before = await Started("preface");

        // -w to stderr: the version curl spoke, to be sure it was HTTP/2
        Assert.Equal((small, "2"), Curl("-sk", "--fail", http2, "-w", "%{stderr}%{http_version}", $"{baseUrl}/small-{id}.txt"));
        Assert.Equal((NginxH2.JsonBody, "2"), Curl("-sk", "--fail", http2, "-w", "%{stderr}%{http_version}",
            "-H", "content-type: application/json", "--data-binary", json, $"{baseUrl}/json?post={id}"));
        Assert.Equal((text, "2"), Curl("-sk", "--fail", http2, "-w", "%{stderr}%{http_version}", "--compressed", $"{baseUrl}/text-{id}.txt"));
        Assert.Equal((big, "2"), Curl("-sk", "--fail", http2, "-w", "%{stderr}%{http_version}", $"{baseUrl}/big-{id}.txt"));

        var host = $"127.0.0.1:{port}";
        await EachSideAsync($"/small-{id}.txt", m =>
        {
            AssertHttp2(m, "GET", $"/small-{id}.txt", host);
            Assert.Equal(small, m.Field("responsePayload"));
        });
        await EachSideAsync($"/json?post={id}", m =>
        {
            AssertHttp2(m, "POST", $"/json?post={id}", host);
            Assert.Equal(json, m.Field("requestPayload"));
            Assert.Equal(NginxH2.JsonBody, m.Field("responsePayload"));
            Assert.Equal("application/json", m.HeaderMap("requestHeaders").GetValueOrDefault("content-type"));
        });
        await EachSideAsync($"/text-{id}.txt", m =>
        {
            AssertHttp2(m, "GET", $"/text-{id}.txt", host);
            Assert.Equal(text, m.Field("responsePayload"));
            var response = m.HeaderMap("responseHeaders");
            Assert.Equal("gzip", response.GetValueOrDefault("x-collector-decoded"));
            Assert.False(response.ContainsKey("content-encoding"));
        });
        await EachSideAsync($"/big-{id}.txt", m =>
        {
            AssertHttp2(m, "GET", $"/big-{id}.txt", host);
            var body = m.Field("responsePayload");
            Assert.Equal(big.Length, body.Length);
            Assert.True(big == body, "the 1 MiB body differs");
        }, TimeSpan.FromSeconds(30));
        string[] paths = [$"/small-{id}.txt", $"/json?post={id}", $"/text-{id}.txt", $"/big-{id}.txt"];
        foreach (var m in C.Messages().Where(m => paths.Contains(m.Field("path"))))
        {
            Assert.True(m.Field("process_name") == (m.Field("direction") == "1" ? "nginx" : "curl"), AktoFields.Describe([m]));
            Assert.Equal($"127.0.0.1:{port}", m.Field("destIp"));
        }
        // four connections, each seen from both of its ends
        Assert.True(await H2Peers.WaitForMetricAsync(() => Started("preface"), before + 8) >= before + 8, await DiagnosticsAsync());
    }

    // ------------------------------------------------------------------------ b. python3-h2

    private sealed record Expected(string Method, string Path, string RequestBody, string ResponseBody,
        Dictionary<string, string>? RequestHeaders = null, Dictionary<string, string>? ResponseHeaders = null);

    // what tests/Peers/h2_peer.py's server answers (its response_body() and scenario helpers)
    private static string PyResponse(string path, string requestBody = "") =>
        $"response {path}\n" + (requestBody.Length > 0 ? $"echo {requestBody}\n" : "");

    private static string BigValue(int i) => new(Enumerable.Range(0, 1000).Select(k => (char)('a' + (i + k) % 26)).ToArray());

    private static string InterleaveBody(int n) => string.Concat(Enumerable.Range(0, 300).Select(k => $"{n:D4}-{k:D4} "));

    private static string GzipText(string path) => string.Concat(Enumerable.Range(0, 2000).Select(i => $"gzip line {i:D5} of {path}\n"));

    private static string PyPath(string scenario, int n, string tag) => $"/s/{scenario}/{n}/{tag}";

    private static List<Expected> PythonExpected(string scenario, string tag)
    {
        string P(int n) => PyPath(scenario, n, tag);
        var common = H(("x-tag", tag), ("user-agent", "h2-peer"));
        Dictionary<string, string> With(params (string, string)[] more) => new(common.Concat(H(more)));
        switch (scenario)
        {
            case "basic":
            {
                var json = $$"""{"n": 1, "tag": "{{tag}}"}"""; // python's json.dumps
                return
                [
                    new("GET", P(0), "", PyResponse(P(0)), common),
                    new("POST", P(1), json, $$$"""{"path":"{{{P(1)}}}","echo":{"n":1,"tag":"{{{tag}}}"}}""",
                        With(("content-type", "application/json")), H(("content-type", "application/json"))),
                    new("POST", P(2), $"hello 2 {tag}", PyResponse(P(2), $"hello 2 {tag}"), With(("content-type", "text/plain"))),
                ];
            }
            case "continuation":
            {
                // ~30 KB header blocks each way: HEADERS + CONTINUATION
                var big = Enumerable.Range(0, 30).Select(i => ($"x-big-{i:D2}", BigValue(i))).ToArray();
                Dictionary<string, string> Back(int n) => H(Enumerable.Range(0, 30).Select(i => ($"x-big-resp-{i:D2}", BigValue(i + n))).ToArray());
                return
                [
                    new("GET", P(0), "", PyResponse(P(0)), With(big), Back(0)),
                    new("POST", P(1), $"big headers {tag}", PyResponse(P(1), $"big headers {tag}"), With(big), Back(1)),
                ];
            }
            case "padding":
                return
                [
                    new("GET", P(0), "", PyResponse(P(0)), common),
                    new("POST", P(1), $"padded body 1 {tag}", PyResponse(P(1), $"padded body 1 {tag}"), common),
                ];
            case "table-size":
                return Enumerable.Range(0, 6).Select(n => new Expected("GET", P(n), "", PyResponse(P(n)),
                    With(("x-repeat", "same-value-" + tag), ("x-n", n.ToString())),
                    H(("x-resp-repeat", "same-response-value"), ("x-resp-n", n.ToString())))).ToList();
            case "sensitive":
                return Enumerable.Range(0, 4).Select(n => new Expected("GET", P(n), "", PyResponse(P(n)),
                    With(("authorization", $"Bearer secret-{n}-{tag}"), ("cookie", $"c={n}"), ("x-api-key", $"key-{n}")),
                    H(("set-cookie", $"s=secret-{n}"), ("x-resp-secret", $"resp-secret-{n}")))).ToList();
            case "trailers":
                return
                [
                    new("POST", P(0), $"with trailers {tag}", PyResponse(P(0), $"with trailers {tag}"), common,
                        H(("x-trailer-n", "0"), ("x-got-trailer", "req-" + tag))),
                    new("GET", P(1), "", PyResponse(P(1)), common, H(("x-trailer-n", "1"), ("x-got-trailer", ""))),
                ];
            case "gzip":
                return [new("GET", P(0), "", GzipText(P(0)), With(("accept-encoding", "gzip")), H(("x-collector-decoded", "gzip")))];
            default:
                throw new ArgumentException(scenario);
        }
    }

    public static IEnumerable<object[]> PythonScenarios() =>
        from scenario in new[] { "basic", "continuation", "padding", "table-size", "sensitive", "trailers", "gzip" }
        from mode in new[] { "h2c", "tls" }
        select new object[] { scenario, mode };

    [Theory]
    [MemberData(nameof(PythonScenarios))]
    public async Task Python_h2_exchanges_are_captured_whole_and_paired(string scenario, string mode)
    {
        var server = f.Server("python", mode);
        var tag = NewTag();
        H2Peers.PythonClient(server.Port, mode == "tls", tag, scenario);
        var host = $"127.0.0.1:{server.Port}";
        foreach (var x in PythonExpected(scenario, tag))
        {
            await EachSideAsync(x.Path, m =>
            {
                AssertHttp2(m, x.Method, x.Path, host);
                Assert.Equal("python3", m.Field("process_name"));
                Assert.Equal(x.RequestBody, m.Field("requestPayload"));
                Assert.Equal(x.ResponseBody, m.Field("responsePayload"));
                AssertHeaders(x.RequestHeaders, m.HeaderMap("requestHeaders"), $"{x.Path} request header");
                AssertHeaders(x.ResponseHeaders, m.HeaderMap("responseHeaders"), $"{x.Path} response header");
                if (scenario == "gzip") Assert.False(m.HeaderMap("responseHeaders").ContainsKey("content-encoding"));
            });
        }
    }

    [Theory]
    [InlineData("h2c")]
    [InlineData("tls")]
    public async Task A_pushed_response_is_an_exchange_of_its_own(string mode)
    {
        var server = f.Server("python", mode);
        var tag = NewTag();
        H2Peers.PythonClient(server.Port, mode == "tls", tag, "push");
        var main = PyPath("push", 0, tag);
        var pushed = main + "/pushed";
        var host = $"127.0.0.1:{server.Port}";
        await EachSideAsync(main, m =>
        {
            AssertHttp2(m, "GET", main, host);
            Assert.Equal(PyResponse(main), m.Field("responsePayload"));
        });
        await EachSideAsync(pushed, m =>
        {
            AssertHttp2(m, "GET", pushed, host); // the PUSH_PROMISE's request: its :authority is the host
            Assert.Equal("", m.Field("requestPayload"));
            Assert.Equal($"pushed {pushed}\n", m.Field("responsePayload"));
        });
    }

    [Theory]
    [InlineData("h2c")]
    [InlineData("tls")]
    public async Task Reset_streams_are_counted_and_never_sent_as_whole(string mode)
    {
        var server = f.Server("python", mode);
        var tag = NewTag();
        var before = await Dropped("h2_stream_reset");
        // /s/rst/0: the server resets after 1000 of 100000 bytes; /s/rst/1: the client resets its
        // POST after 500 bytes; /s/rst/2 on the same connection afterwards is the marker
        H2Peers.PythonClient(server.Port, mode == "tls", tag, "rst");
        var marker = PyPath("rst", 2, tag);
        await EachSideAsync(marker, m =>
        {
            AssertHttp2(m, "GET", marker, $"127.0.0.1:{server.Port}");
            Assert.Equal(PyResponse(marker), m.Field("responsePayload"));
        });
        // two reset streams, each seen from both ends
        var after = await H2Peers.WaitForMetricAsync(() => Dropped("h2_stream_reset"), before + 4);
        Assert.True(after >= before + 4, $"h2_stream_reset went from {before} to {after}\n{await DiagnosticsAsync()}");
        foreach (var m in C.Messages().Where(m => m.Field("path") == PyPath("rst", 0, tag) || m.Field("path") == PyPath("rst", 1, tag)))
        {
            var marked = m.HeaderMap("requestHeaders").ContainsKey("x-collector-body-truncated") ||
                m.HeaderMap("responseHeaders").ContainsKey("x-collector-body-truncated");
            Assert.True(marked, "a reset stream sent as if whole: " + AktoFields.Describe([m]));
        }
    }

    [Theory]
    [InlineData("h2c")]
    [InlineData("tls")]
    public async Task Streams_above_the_goaway_last_stream_id_are_counted_not_sent(string mode)
    {
        var server = f.Server("python", mode);
        var tag = NewTag();
        var before = await Dropped("h2_goaway");
        // three requests at once; the server answers the first and sends GOAWAY(last-stream-id =
        // its stream); then "basic" on a new connection, the marker
        H2Peers.PythonClient(server.Port, mode == "tls", tag, "goaway", "basic");
        var first = PyPath("goaway", 0, tag);
        await EachSideAsync(first, m =>
        {
            AssertHttp2(m, "GET", first, $"127.0.0.1:{server.Port}");
            Assert.Equal(PyResponse(first), m.Field("responsePayload"));
        });
        await BothSidesAsync(PyPath("basic", 2, tag));
        var after = await H2Peers.WaitForMetricAsync(() => Dropped("h2_goaway"), before + 4);
        Assert.True(after >= before + 4, $"h2_goaway went from {before} to {after} (two streams, both ends)\n{await DiagnosticsAsync()}");
        Assert.DoesNotContain(C.Messages(), m => m.Field("path") == PyPath("goaway", 1, tag) || m.Field("path") == PyPath("goaway", 2, tag));
    }

    [Theory]
    [InlineData("h2c")]
    [InlineData("tls")]
    public async Task A_hundred_interleaved_streams_are_each_paired_with_their_own_answer(string mode)
    {
        var server = f.Server("python", mode);
        var tag = NewTag();
        // 100 streams open at once (odd n: POST bodies in 500-byte DATA frames, interleaved); the
        // server answers once all are in, in another order, its DATA frames interleaved too
        H2Peers.PythonClient(server.Port, mode == "tls", tag, "interleave");
        var found = await C.WaitForAsync(m => m.Field("path").StartsWith("/s/interleave/") && m.Field("path").EndsWith("/" + tag), 200,
            TimeSpan.FromSeconds(30));
        if (found.Count != 200) Assert.Fail($"expected 200 messages (100 streams, both ends), got {found.Count}\n{await DiagnosticsAsync()}");
        for (var n = 0; n < 100; n++)
        {
            var path = PyPath("interleave", n, tag);
            var both = found.Where(m => m.Field("path") == path).ToList();
            Assert.Equal(2, both.Count);
            Assert.Equal(["1", "2"], both.Select(m => m.Field("direction")).Order());
            var body = n % 2 == 1 ? InterleaveBody(n) : "";
            foreach (var m in both)
            {
                AssertHttp2(m, n % 2 == 1 ? "POST" : "GET", path, $"127.0.0.1:{server.Port}");
                Assert.Equal(body, m.Field("requestPayload"));
                Assert.Equal(PyResponse(path, body) + InterleaveBody(n), m.Field("responsePayload"));
                Assert.Equal(path, m.HeaderMap("responseHeaders").GetValueOrDefault("x-peer-path"));
            }
        }
    }

    [Fact]
    public async Task An_h2c_upgrade_goes_on_as_http2()
    {
        var server = f.Server("python", "h2c");
        var tag = NewTag();
        var before = await Started("upgrade");
        // GET /s/upgrade/0 as HTTP/1.1 with Upgrade: h2c, answered on stream 1 after the 101; then
        // /s/upgrade/1 as an HTTP/2 stream on the same connection
        H2Peers.PythonClient(server.Port, false, tag, "upgrade");
        var upgraded = PyPath("upgrade", 0, tag);
        var next = PyPath("upgrade", 1, tag);
        await EachSideAsync(next, m =>
        {
            AssertHttp2(m, "GET", next, $"127.0.0.1:{server.Port}");
            Assert.Equal(PyResponse(next), m.Field("responsePayload"));
        });
        // the request that asked for the upgrade, answered on stream 1 (its type is left open)
        await EachSideAsync(upgraded, m =>
        {
            Assert.Equal("GET", m.Field("method"));
            Assert.Equal("200", m.Field("statusCode"));
            Assert.Equal(PyResponse(upgraded), m.Field("responsePayload"));
        });
        var after = await H2Peers.WaitForMetricAsync(() => Started("upgrade"), before + 2);
        Assert.True(after >= before + 2, $"start=\"upgrade\" went from {before} to {after}\n{await DiagnosticsAsync()}");
    }

    // ------------------------------------------------------------------------ c. gRPC (.NET)

    private static PeerMsg Msg(string text, long n, byte[]? data = null) => new(text, n, data ?? []);

    private static byte[] Reversed(byte[] b) => b.Reverse().ToArray();

    /// <summary>What tests/Peers/GrpcPeer sends and answers (its Expect class), as message pairs.</summary>
    private static (string Path, List<(PeerMsg? Request, PeerMsg? Response)> Pairs) GrpcExpected(string scenario, string tag)
    {
        switch (scenario)
        {
            case "unary":
            {
                var data = Enumerable.Range(0, 16).Select(i => (byte)i).ToArray();
                return ("/peer.Peer/Unary", [(Msg($"unary-{tag}", 1, data), Msg($"unary-{tag}/reply", 1001, Reversed(data)))]);
            }
            case "server-stream":
                return ("/peer.Peer/ServerStream", Enumerable.Range(0, 5)
                    .Select(i => (i == 0 ? Msg($"ss-{tag}", 5) : null, (PeerMsg?)Msg($"ss-{tag}/{i}", i))).ToList());
            case "client-stream":
                return ("/peer.Peer/ClientStream", Enumerable.Range(0, 5)
                    .Select(i => ((PeerMsg?)Msg($"cs-{tag}/{i}", i), i == 0 ? Msg($"cs-{tag}/0/done", 5) : null)).ToList());
            case "bidi":
                return ("/peer.Peer/Bidi", Enumerable.Range(0, 5)
                    .Select(i => ((PeerMsg?)Msg($"bidi-{tag}/{i}", i), (PeerMsg?)Msg($"bidi-{tag}/{i}/echo", i + 100))).ToList());
            case "gzip":
            {
                var data = Encoding.ASCII.GetBytes(string.Concat(Enumerable.Repeat("gzip me ", 512)));
                return ("/peer.Peer/Unary", [(Msg($"gzip-{tag}", 7, data), Msg($"gzip-{tag}/reply", 1007, Reversed(data)))]);
            }
            case "large":
            {
                var data = Enumerable.Range(0, 100 * 1024).Select(i => (byte)(i * 7 % 251)).ToArray();
                return ("/peer.Peer/Unary", [(Msg($"large-{tag}", 100, data), Msg($"large-{tag}/reply", 1100, Reversed(data)))]);
            }
            default:
                throw new ArgumentException(scenario);
        }
    }

    public static IEnumerable<object[]> GrpcScenarios() =>
        from scenario in new[] { "unary", "server-stream", "client-stream", "bidi", "gzip", "large" }
        from mode in new[] { "h2c", "tls" }
        select new object[] { scenario, mode };

    private static int GrpcIndex(JsonElement m) =>
        int.TryParse(m.HeaderMap("requestHeaders").GetValueOrDefault("x-collector-grpc-index"), out var i) ? i : -1;

    private static PeerMsg? DecodeOrExplain(JsonElement m, string side, int index)
    {
        try
        {
            return GrpcWire.Decode(m.Field(side + "Payload"));
        }
        catch (FormatException e)
        {
            throw new Xunit.Sdk.XunitException($"pair {index}, direction {m.Field("direction")} ({m.Field("process_name")}), {side}: {e.Message}; " +
                $"{side} headers {m.Field(side + "Headers")}");
        }
    }

    [Theory]
    [MemberData(nameof(GrpcScenarios))]
    public async Task Grpc_calls_are_one_message_per_request_and_response_pair(string scenario, string mode)
    {
        var server = f.Server("grpc", mode);
        var tag = NewTag();
        H2Peers.GrpcClient(Url(mode, server.Port), tag, scenario);
        var (path, pairs) = GrpcExpected(scenario, tag);

        // this call's pair 0 (each client run is one connection: its other pairs share the address)
        var firstText = pairs[0].Request!.Text;
        var firsts = await C.WaitForAsync(m => m.Field("path") == path && GrpcIndex(m) == 0 &&
            GrpcWire.TryDecode(m.Field("requestPayload"))?.Text == firstText, 2);
        if (firsts.Count != 2) Assert.Fail($"expected pair 0 of {path} ({firstText}) from both sides, got {firsts.Count}\n{await DiagnosticsAsync()}");
        Assert.Equal(["1", "2"], firsts.Select(m => m.Field("direction")).Order());
        var client = firsts[0].Field("ip");
        Assert.Equal(client, firsts[1].Field("ip"));

        var all = await C.WaitForAsync(m => m.Field("path") == path && m.Field("ip") == client, 2 * pairs.Count);
        Assert.True(all.Count == 2 * pairs.Count, $"expected {pairs.Count} pairs from each side, got {all.Count} messages\n{await DiagnosticsAsync()}");
        foreach (var direction in new[] { "1", "2" })
        {
            var side = all.Where(m => m.Field("direction") == direction).OrderBy(GrpcIndex).ToList();
            Assert.Equal(pairs.Count, side.Count);
            for (var i = 0; i < pairs.Count; i++)
            {
                var m = side[i];
                AssertHttp2(m, "POST", path, $"127.0.0.1:{server.Port}");
                Assert.Equal("GrpcPeer", m.Field("process_name"));
                var request = m.HeaderMap("requestHeaders");
                Assert.Equal(i.ToString(), request.GetValueOrDefault("x-collector-grpc-index"));
                Assert.StartsWith("application/grpc", request.GetValueOrDefault("content-type"));
                Assert.Equal(pairs[i].Request, DecodeOrExplain(m, "request", i));
                Assert.Equal(pairs[i].Response, DecodeOrExplain(m, "response", i));
            }
            Assert.Equal("0", side[^1].HeaderMap("responseHeaders").GetValueOrDefault("grpc-status"));
        }
    }

    // ------------------------------------------------------------------------ d. node http2

    [Theory]
    [InlineData("tls")]
    [InlineData("h2c")]
    public async Task Node_http2_client_and_server_are_captured(string mode)
    {
        var server = f.Server("node", mode);
        var tag = NewTag();
        H2Peers.NodeClient(Url(mode, server.Port), tag);
        var host = $"127.0.0.1:{server.Port}";
        var get = $"/n/get/{tag}";
        var post = $"/n/post/{tag}";
        var trailers = $"/n/trailers/{tag}";
        var json = $$"""{"tag":"{{tag}}","n":2,"items":["a","b"]}""";
        await EachSideAsync(get, m =>
        {
            AssertHttp2(m, "GET", get, host);
            Assert.Equal("node", m.Field("process_name"));
            Assert.Equal($"node {get}\n", m.Field("responsePayload"));
        });
        await EachSideAsync(post, m =>
        {
            AssertHttp2(m, "POST", post, host);
            Assert.Equal(json, m.Field("requestPayload"));
            Assert.Equal($$"""{"path":"{{post}}","echo":{{json}}}""", m.Field("responsePayload"));
            Assert.Equal("application/json", m.HeaderMap("requestHeaders").GetValueOrDefault("content-type"));
        });
        await EachSideAsync(trailers, m =>
        {
            AssertHttp2(m, "GET", trailers, host);
            Assert.Equal($"node {trailers}\n", m.Field("responsePayload"));
            AssertHeaders(H(("x-node-trailer", tag), ("x-node-count", "3")), m.HeaderMap("responseHeaders"), "trailer");
        });
    }
}

/// <summary>e. An HTTP/2 connection the collector joins in its middle: opened, used, then the
/// collector starts, then the same connection goes on. HPACK entries made before are unknown to
/// it; what decodes must come out, what does not is counted.</summary>
[Collection("kernel")]
public sealed class Http2JoinedConnectionTests
{
    [Fact]
    public async Task A_connection_opened_before_the_collector_is_joined_and_what_decodes_is_emitted()
    {
        using var server = PeerServer.Python(null);
        var tag = Guid.NewGuid().ToString("N")[..12];
        string P(int n) => $"/s/joined/{n}/{tag}";
        // /s/joined/0..2 now; after "paused" and a line on stdin: /s/joined/0 again (its :path is
        // then one index into the dynamic table from before: it cannot be named), /s/joined/3..7
        // with old and new header values (x-new: new-value-4 inserted by 4, referenced by 5)
        var psi = new ProcessStartInfo(Clients.Python)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var a in new[] { H2Peers.H2Peer, "client", "--port", server.Port.ToString(), "--tag", tag, "joined" })
            psi.ArgumentList.Add(a);
        using var client = Process.Start(psi)!;
        var stderr = client.StandardError.ReadToEndAsync();
        try
        {
            var paused = await client.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(30));
            Assert.True(paused == "paused", $"the client said {paused}: {(client.HasExited ? await stderr : "")}");

            await using var collector = await CollectorProcess.StartAsync(new Dictionary<string, string> { ["TRACE_COMMS"] = "python3" });
            await client.StandardInput.WriteLineAsync("go");
            await client.StandardInput.FlushAsync();
            var rest = await client.StandardOutput.ReadToEndAsync().WaitAsync(TimeSpan.FromSeconds(30));
            await client.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10));
            Assert.True(client.ExitCode == 0 && rest.Contains("done"), $"the client exited {client.ExitCode}: {rest}{await stderr}");

            // the marker: the last request on the connection
            var marker = await collector.WaitForAsync(m => m.Field("path") == P(7), 2);
            Assert.True(marker.Count == 2, $"the marker {P(7)} from both sides: got {marker.Count}; {collector.Messages().Count()} messages\n" +
                AktoFields.Describe(collector.Messages()));
            var host = $"127.0.0.1:{server.Port}";
            foreach (var n in new[] { 3, 4, 5, 6, 7 })
            {
                var found = collector.Messages().Where(m => m.Field("path") == P(n)).ToList();
                Assert.True(found.Count == 2, $"{P(n)}: {found.Count} messages");
                Assert.Equal(["1", "2"], found.Select(m => m.Field("direction")).Order());
                foreach (var m in found)
                {
                    Assert.Equal("HTTP/2", m.Field("type"));
                    Assert.Equal(n == 6 ? "POST" : "GET", m.Field("method"));
                    Assert.Equal("200", m.Field("statusCode"));
                    Assert.DoesNotContain(m.HeaderMap("requestHeaders").Keys, k => k.StartsWith(':'));
                    if (n == 6)
                    {
                        Assert.Equal($$"""{"path": "{{P(6)}}"}""", m.Field("requestPayload"));
                        Assert.Equal($$$"""{"path":"{{{P(6)}}}","echo":{"path":"{{{P(6)}}}"}}""", m.Field("responsePayload"));
                    }
                    else
                    {
                        Assert.Equal($"response {P(n)}\n", m.Field("responsePayload"));
                    }
                    if (n is 4 or 5) // an entry made after the join, then referenced: both decode
                        Assert.Equal("new-value-4", m.HeaderMap("requestHeaders").GetValueOrDefault("x-new"));
                }
            }
            // the host (:authority) was indexed before the join: not asserted here
            foreach (var n in new[] { 0, 1, 2 })
                Assert.DoesNotContain(collector.Messages(), m => m.Field("path") == P(n));

            var joined = await H2Peers.WaitForMetricAsync(() => collector.MetricAsync("collector_http2_connections_total{start=\"joined\"}"), 1);
            Assert.True(joined >= 1, "collector_http2_connections_total{start=\"joined\"} = " + joined);
            var unnamed = await H2Peers.WaitForMetricAsync(() => H2Peers.MetricSumAsync(collector, "collector_http2_streams_unnamed_total"), 1);
            Assert.True(unnamed >= 1, "the repeated /s/joined/0 (fully indexed from before) should count as unnamed: " + unnamed);
        }
        finally
        {
            if (!client.HasExited) client.Kill(entireProcessTree: true);
        }
    }
}
