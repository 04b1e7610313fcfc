using System.Diagnostics;
using System.Text.Json;
using Collector.Tests.Support;

namespace Collector.Tests.Kernel;

/// <summary>One collector for GoTlsCaptureTests, tracing the Go test peers (tests/Peers/go-tls) by
/// name. Bodies up to 2 MiB are kept and a call may be captured whole up to 1 MiB (64 chunks):
/// Go's net/http writes a 1 MiB body in one tls.Conn.Write.</summary>
public sealed class GoTlsFixture : IAsyncLifetime
{
    public CollectorProcess Collector { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        GoPeers.EnsureBuilt();
        Collector = await CollectorProcess.StartAsync(new Dictionary<string, string>
        {
            ["TRACE_COMMS"] = string.Join(",", GoPeers.Forms.Concat(GoPeers.ExternalForms).Select(GoTlsCaptureTests.ProcessName)),
            ["HTTP_MAX_BODY_BYTES"] = "2097152",
            ["KAFKA_MAX_MESSAGE_BYTES"] = "8000000",
            ["CAPTURE_CHUNKS_PER_CALL"] = "64",
        });
    }

    public async Task DisposeAsync()
    {
        if (Collector is not null) await Collector.DisposeAsync();
    }
}

/// <summary>Go's crypto/tls captured at (*Conn).Read and Write (issue 14): a net/http HTTPS server
/// and client of each Debian Go toolchain, in separate processes, HTTP/1.1 and HTTP/2, both sides'
/// exchanges right and no ciphertext; every form a Go service ships in (stripped, PIE, cgo off,
/// externally linked); a binary of Go 1.15 counted as too old, not misread.</summary>
[Collection("kernel")]
public sealed class GoTlsCaptureTests(GoTlsFixture f) : IClassFixture<GoTlsFixture>
{
    private CollectorProcess C => f.Collector;

    /// <summary>The process name of a go-tls build: its file name, cut to the kernel's 15 bytes.</summary>
    public static string ProcessName(string form) => ("go-tls-" + form) is var n && n.Length > 15 ? n[..15] : n;

    public static IEnumerable<object[]> ToolchainsAndModes() =>
        from v in GoPeers.Toolchains from mode in new[] { "h1", "h2" } select new object[] { v, mode };

    public static IEnumerable<object[]> Forms() =>
        GoPeers.Builds().Where(b => b.Form != "default").Select(b => new object[] { b.Version, b.Form });

    [Theory]
    [MemberData(nameof(ToolchainsAndModes))]
    public async Task Server_and_client_of_each_toolchain_are_captured_from_both_sides(string version, string mode)
    {
        // three rounds on one kept-alive connection; the first also moves 1 MiB each way
        var tag = await RunAsync(version, "default", mode, rounds: 3, bigRounds: 1);
        var proto = mode == "h1" ? "HTTP/1.1" : "HTTP/2.0";
        var type = mode == "h1" ? "HTTP/1.1" : "HTTP/2";
        for (var r = 0; r < 3; r++)
        {
            var get = $"/g/get/{tag}/0/{r}";
            foreach (var m in await BothSidesAsync(get))
            {
                AssertExchange(m, "GET", get, type, version);
                Assert.Equal($"go {get} {proto}\n", m.Field("responsePayload"));
            }
            var post = $"/g/post/{tag}/0/{r}";
            foreach (var m in await BothSidesAsync(post))
            {
                AssertExchange(m, "POST", post, type, version);
                Assert.Equal($$"""{"list":["a","b"],"n":42,"tag":"{{tag}}/0/{{r}}"}""", m.Field("requestPayload"));
                Assert.Equal("application/json", m.HeaderMap("requestHeaders").GetValueOrDefault("content-type"));
                using var answer = JsonDocument.Parse(m.Field("responsePayload"));
                Assert.Equal(post, answer.RootElement.GetProperty("path").GetString());
                Assert.Equal(proto, answer.RootElement.GetProperty("proto").GetString());
            }
        }
        var big = $"/g/big/{tag}/0/0";
        var found = await C.WaitForAsync(m => m.Field("path") == big, 4, TimeSpan.FromSeconds(30));
        Assert.True(found.Count == 4, $"{big}: {found.Count} messages\n{await DiagnosticsAsync()}");
        var bigBody = BigBody();
        foreach (var side in new[] { "1", "2" })
        {
            var getBig = Assert.Single(found, m => m.Field("method") == "GET" && m.Field("direction") == side);
            AssertExchange(getBig, "GET", big, type, version);
            Assert.True(getBig.Field("responsePayload") == bigBody, $"side {side}: the 1 MiB answer differs ({getBig.Field("responsePayload").Length} bytes)");
            var postBig = Assert.Single(found, m => m.Field("method") == "POST" && m.Field("direction") == side);
            AssertExchange(postBig, "POST", big, type, version);
            Assert.True(postBig.Field("requestPayload") == bigBody, $"side {side}: the 1 MiB request body differs ({postBig.Field("requestPayload").Length} bytes)");
            Assert.Contains("\"intact\":true", postBig.Field("responsePayload"));
        }
        AssertNoCiphertext();
    }

    [Theory]
    [MemberData(nameof(Forms))]
    public async Task Every_form_is_captured(string version, string form)
    {
        // stripped, PIE, cgo off, externally linked: HTTP/2 for one half, HTTP/1.1 for the other
        var mode = form is "pie" or "piestrip" or "extpie" ? "h2" : "h1";
        var tag = await RunAsync(version, form, mode, rounds: 2, bigRounds: 0);
        for (var r = 0; r < 2; r++)
        {
            var post = $"/g/post/{tag}/0/{r}";
            foreach (var m in await BothSidesAsync(post))
            {
                AssertExchange(m, "POST", post, mode == "h1" ? "HTTP/1.1" : "HTTP/2", version, form);
                Assert.Equal($$"""{"list":["a","b"],"n":42,"tag":"{{tag}}/0/{{r}}"}""", m.Field("requestPayload"));
            }
        }
        AssertNoCiphertext();
    }

    [Theory]
    [InlineData("h1")]
    [InlineData("h2")]
    public async Task A_hundred_goroutines_sharing_one_pool_each_exchange_is_captured_once_and_paired(string mode)
    {
        // h1: up to 100 connections of the pool at once; h2: 100 streams interleaved on one
        const int goroutines = 100;
        var checksBefore = await FdChecksAsync();
        var tag = await RunAsync("1.22", "default", mode, rounds: 1, bigRounds: 0, parallel: goroutines);
        var proto = mode == "h1" ? "HTTP/1.1" : "HTTP/2.0";
        var found = await C.WaitForAsync(m => m.Field("path").Contains($"/{tag}/"), goroutines * 4, TimeSpan.FromSeconds(60));
        Assert.True(found.Count == goroutines * 4, $"{found.Count} of {goroutines * 4} messages\n{await DiagnosticsAsync()}");
        // a later run, captured: anything of the first still to come would have come before it
        var marker = await RunAsync("1.22", "default", mode, rounds: 1, bigRounds: 0);
        await BothSidesAsync($"/g/get/{marker}/0/0");
        var all = C.Messages().Where(m => m.Field("path").Contains($"/{tag}/")).ToList();
        Assert.Equal(goroutines * 4, all.Count);
        for (var g = 0; g < goroutines; g++)
        {
            var get = $"/g/get/{tag}/{g}/0";
            var post = $"/g/post/{tag}/{g}/0";
            foreach (var side in new[] { "1", "2" })
            {
                var m = Assert.Single(all, m => m.Field("path") == get && m.Field("direction") == side);
                AssertExchange(m, "GET", get, mode == "h1" ? "HTTP/1.1" : "HTTP/2", "1.22");
                Assert.Equal($"go {get} {proto}\n", m.Field("responsePayload"));
                var p = Assert.Single(all, m => m.Field("path") == post && m.Field("direction") == side);
                AssertExchange(p, "POST", post, mode == "h1" ? "HTTP/1.1" : "HTTP/2", "1.22");
                Assert.Equal($$"""{"list":["a","b"],"n":42,"tag":"{{tag}}/{{g}}/0"}""", p.Field("requestPayload"));
                using var answer = JsonDocument.Parse(p.Field("responsePayload"));
                Assert.Equal(post, answer.RootElement.GetProperty("path").GetString());
            }
        }
        // the sockets read from each tls.Conn were those its calls' syscalls used
        var checks = await FdChecksAsync();
        Assert.True(checks.Match > checksBefore.Match, $"no Go TLS call's socket was checked at a syscall: {checks}");
        Assert.Equal(checksBefore.Mismatch, checks.Mismatch);
        AssertNoCiphertext();
    }

    [Theory]
    [InlineData("h1")]
    [InlineData("h2")]
    public async Task A_go_process_and_connection_from_before_the_collector_are_captured(string mode)
    {
        // the server and the client start, and the client's pool connects, before this collector
        var path = GoPeers.TlsPeer("1.21", "nocgo");
        using var server = GoServer.Start(path);
        var tag = $"before-{mode}-{Guid.NewGuid().ToString("N")[..8]}";
        var hold = Path.Combine(Path.GetTempPath(), "go-tls-hold-" + tag);
        using var client = GoClient.Start(path, $"client --url https://127.0.0.1:{server.Port} --mode {mode} --count 2 --big 0 --tag {tag} --hold {hold}");
        try
        {
            Assert.True(await client.WaitForLineAsync("held", TimeSpan.FromSeconds(60)), $"the client never held: {client.Output}");
            await using var late = await CollectorProcess.StartAsync(new Dictionary<string, string> { ["TRACE_COMMS"] = ProcessName("nocgo") });
            // found by the start-up scan of running processes, not by an exec
            var attached = await late.WaitForLogAsync(l => l.EndsWith("go_tls uprobes to " + path), TimeSpan.FromSeconds(20));
            Assert.True(attached is not null, $"{path} was not attached:\n{late.Log}");
            File.WriteAllText(hold, "");
            Assert.True(await client.WaitForExitAsync(TimeSpan.FromSeconds(60)) == 0, $"client: {client.Output}");
            // the second round, on the connection of the first
            foreach (var route in new[] { "get", "post" })
            {
                var p = $"/g/{route}/{tag}/0/1";
                var found = await late.WaitForAsync(m => m.Field("path") == p, 2, TimeSpan.FromSeconds(20));
                Assert.True(found.Count == 2, $"{p}: {found.Count} messages\n{late.Status}\n{string.Join("\n", late.LogLines.TakeLast(20))}");
                Assert.Single(found, m => m.Field("direction") == "1");
                foreach (var m in found)
                {
                    Assert.Equal(route == "get" ? "GET" : "POST", m.Field("method"));
                    Assert.Equal(mode == "h1" ? "HTTP/1.1" : "HTTP/2", m.Field("type"));
                    Assert.Equal("200", m.Field("statusCode"));
                    if (route == "get")
                        Assert.Equal($"go {p} {(mode == "h1" ? "HTTP/1.1" : "HTTP/2.0")}\n", m.Field("responsePayload"));
                    else
                        Assert.Equal($$"""{"list":["a","b"],"n":42,"tag":"{{tag}}/0/1"}""", m.Field("requestPayload"));
                }
            }
        }
        finally
        {
            File.Delete(hold);
        }
    }

    [Theory]
    [InlineData("h1")]
    [InlineData("h2")]
    public async Task A_wrapped_connection_is_named_by_the_syscalls_inside_its_calls(string mode)
    {
        // server and client wrap their connections in a net.Conn type of their own: tls.Conn's conn
        // is no *net.TCPConn, and its socket is learned from the syscalls made inside the calls
        var path = GoPeers.TlsPeer("1.23", "default");
        var checksBefore = await FdChecksAsync();
        using var server = GoServer.Start(path, "--wrap");
        var attached = await C.WaitForLogAsync(l => l.EndsWith("go_tls uprobes to " + path), TimeSpan.FromSeconds(20));
        Assert.True(attached is not null, $"{path} was not attached:\n{C.Log}");
        var tag = $"wrap-{mode}-{Guid.NewGuid().ToString("N")[..8]}";
        var (code, output, error) = Shell.Run(path, $"client --url https://127.0.0.1:{server.Port} --mode {mode} --count 3 --big 0 --tag {tag} --wrap",
            TimeSpan.FromSeconds(60));
        Assert.True(code == 0, $"client exited {code}: {error}{output}");
        // A first read can be served whole from what the handshake already read (no syscall inside
        // it to name the socket: counted as go_conn_not_tcp); from the second round on, the session
        // is tied to its socket.
        for (var r = 1; r < 3; r++)
        {
            var post = $"/g/post/{tag}/0/{r}";
            foreach (var m in await BothSidesAsync(post))
            {
                AssertExchange(m, "POST", post, mode == "h1" ? "HTTP/1.1" : "HTTP/2", "1.23");
                Assert.Equal($$"""{"list":["a","b"],"n":42,"tag":"{{tag}}/0/{{r}}"}""", m.Field("requestPayload"));
                using var answer = JsonDocument.Parse(m.Field("responsePayload"));
                Assert.Equal(post, answer.RootElement.GetProperty("path").GetString());
            }
        }
        var checks = await FdChecksAsync();
        Assert.True(checks.Learned > checksBefore.Learned, $"no socket learned at a syscall: {checks}");
        Assert.Equal(checksBefore.Mismatch, checks.Mismatch);
        AssertNoCiphertext();
    }

    [Fact]
    public async Task A_binary_of_go_before_1_17_is_counted_as_too_old_not_read()
    {
        var before = await C.MetricAsync("collector_go_binaries_total{result=\"too_old\"}");
        // its own name in the traced list: the 1.15 build of the same program
        var path = Path.Combine(GoPeers.EnsureBuilt(), "go" + GoPeers.TooOldToolchain, "go-tls-default");
        using var server = GoServer.Start(path);
        var line = await C.WaitForLogAsync(l => l.Contains(path) && l.Contains("too_old"), TimeSpan.FromSeconds(20));
        Assert.True(line is not null, $"no log line on {path}:\n{C.Log}");
        Assert.Contains("go1.15", line);
        Assert.Equal(before + 1, await C.MetricAsync("collector_go_binaries_total{result=\"too_old\"}"));
        // its traffic: Go's own TLS, unseen, and nothing read as plaintext from it
        var tag = Guid.NewGuid().ToString("N")[..10];
        var (code, output, error) = Shell.Run(path, $"client --url https://127.0.0.1:{server.Port} --mode h1 --count 1 --big 0 --tag {tag}",
            TimeSpan.FromSeconds(60));
        Assert.True(code == 0, $"go 1.15 client: {error}{output}");
        var marker = await RunAsync("1.23", "default", "h1", rounds: 1, bigRounds: 0); // captured after it
        await BothSidesAsync($"/g/get/{marker}/0/0");
        Assert.DoesNotContain(C.Messages(), m => m.Field("path").Contains(tag));
    }

    [Theory]
    [InlineData("h1")]
    [InlineData("h2")]
    public async Task The_compat_program_set_captures_go_without_attach_cookies(string mode)
    {
        // the programs kernels before 5.17 run (taken here by turning task storage off): no attach
        // cookies there, so the offsets are the programs' own and the connection's type unchecked
        await using var compat = await CollectorProcess.StartAsync(new Dictionary<string, string>
        {
            ["TRACE_COMMS"] = ProcessName("strip"),
            ["BPF_FEATURES_OFF"] = "task_storage",
        });
        Assert.Contains("compat set", compat.LogLines.Single(l => l.Contains("eBPF programs:")));
        var path = GoPeers.TlsPeer("1.22", "strip");
        using var server = GoServer.Start(path);
        var attached = await compat.WaitForLogAsync(l => l.EndsWith("go_tls uprobes to " + path), TimeSpan.FromSeconds(20));
        Assert.True(attached is not null, $"{path} was not attached:\n{compat.Log}");
        Assert.Contains(compat.LogLines, l => l.Contains(path) && l.Contains("connection type not checked: the kernel has no attach cookies"));
        var tag = $"compat-{mode}-{Guid.NewGuid().ToString("N")[..8]}";
        var (code, output, error) = Shell.Run(path, $"client --url https://127.0.0.1:{server.Port} --mode {mode} --count 2 --big 0 --tag {tag}",
            TimeSpan.FromSeconds(60));
        Assert.True(code == 0, $"client exited {code}: {error}{output}");
        for (var r = 0; r < 2; r++)
        {
            var post = $"/g/post/{tag}/0/{r}";
            var found = await compat.WaitForAsync(m => m.Field("path") == post, 2, TimeSpan.FromSeconds(20));
            Assert.True(found.Count == 2, $"{post}: {found.Count} messages\n{compat.Status}");
            foreach (var m in found)
            {
                AssertExchange(m, "POST", post, mode == "h1" ? "HTTP/1.1" : "HTTP/2", "1.22", "strip");
                Assert.Equal($$"""{"list":["a","b"],"n":42,"tag":"{{tag}}/0/{{r}}"}""", m.Field("requestPayload"));
            }
        }
    }

    // ------------------------------------------------------------------------------------------

    /// <summary>Runs a go-tls server and then a client (separate processes, the same build), once the
    /// collector has attached to the build; returns the tag in the client's paths.</summary>
    private async Task<string> RunAsync(string version, string form, string mode, int rounds, int bigRounds, int parallel = 1)
    {
        var path = GoPeers.TlsPeer(version, form);
        using var server = GoServer.Start(path);
        // the server's exec makes the collector look at the file: its probes serve every process of it
        var attached = await C.WaitForLogAsync(l => l.EndsWith("go_tls uprobes to " + path), TimeSpan.FromSeconds(20)); // (go-tls-pie is a prefix of go-tls-piestrip)
        Assert.True(attached is not null, $"{path} was not attached:\n{C.Log}");
        var tag = $"{version}-{form}-{mode}-{Guid.NewGuid().ToString("N")[..8]}";
        var (code, output, error) = Shell.Run(path, $"client --url https://127.0.0.1:{server.Port} --mode {mode} --count {rounds} --big {bigRounds} --tag {tag} --parallel {parallel}",
            TimeSpan.FromSeconds(120));
        Assert.True(code == 0 && output.TrimEnd().EndsWith("done"), $"client exited {code}: {error}{output}");
        return tag;
    }

    private readonly record struct FdChecks(double Match, double Mismatch, double Learned);

    private async Task<FdChecks> FdChecksAsync() => new(
        await C.MetricAsync("collector_go_fd_checks_total{result=\"match\"}"),
        await C.MetricAsync("collector_go_fd_checks_total{result=\"mismatch\"}"),
        await C.MetricAsync("collector_go_fd_checks_total{result=\"learned\"}"));

    private async Task<List<JsonElement>> BothSidesAsync(string path)
    {
        var found = await C.WaitForAsync(m => m.Field("path") == path, 2, TimeSpan.FromSeconds(20));
        if (found.Count != 2)
            Assert.Fail($"expected {path} from both sides, got {found.Count}:\n{AktoFields.Describe(found)}\n{await DiagnosticsAsync()}");
        Assert.Single(found, m => m.Field("direction") == "1");
        Assert.Single(found, m => m.Field("direction") == "2");
        return found;
    }

    private static void AssertExchange(JsonElement m, string method, string path, string type, string version, string form = "default")
    {
        var what = $"go{version} {form} {path} side {m.Field("direction")}";
        Assert.True(m.Field("method") == method, $"{what}: method {m.Field("method")}");
        Assert.True(m.Field("type") == type, $"{what}: type {m.Field("type")}");
        Assert.True(m.Field("statusCode") == "200", $"{what}: status {m.Field("statusCode")}");
        Assert.True(m.Field("process_name") == ProcessName(form), $"{what}: process {m.Field("process_name")}");
        var port = m.Field("destIp").Split(':')[^1];
        Assert.True(m.HeaderMap("requestHeaders").GetValueOrDefault("host") == "127.0.0.1:" + port, $"{what}: host {m.Field("requestHeaders")}");
    }

    /// <summary>No TLS record header (handshake 0x16 0x03, application data 0x17 0x03) in any
    /// message: what was captured is plaintext.</summary>
    private void AssertNoCiphertext()
    {
        foreach (var line in C.Lines)
        {
            Assert.DoesNotContain("\\u0016\\u0003", line);
            Assert.DoesNotContain("\\u0017\\u0003", line);
        }
    }

    private static string BigBody()
    {
        const string pattern = "abcdefghijklmnopqrstuvwxyz0123456789\n";
        return string.Create(1 << 20, 0, (span, _) =>
        {
            for (var i = 0; i < span.Length; i++) span[i] = pattern[i % pattern.Length];
        });
    }

    private async Task<string> DiagnosticsAsync()
    {
        var metrics = (await C.MetricsAsync()).Split('\n')
            .Where(l => !l.StartsWith('#') && (l.Contains("go_") || l.Contains("drop") || l.Contains("tls")) && !l.EndsWith(" 0"));
        return $"{C.Status}\nmetrics:\n" + string.Join("\n", metrics) + "\nlog:\n" + string.Join("\n", C.LogLines.TakeLast(20));
    }
}

/// <summary>A go-tls server on an ephemeral loopback port, killed on dispose.</summary>
public sealed class GoServer : IDisposable
{
    private readonly Process _process;

    public int Port { get; }

    private GoServer(Process process, int port)
    {
        _process = process;
        Port = port;
    }

    public static GoServer Start(string path, string extraArgs = "")
    {
        var psi = new ProcessStartInfo(path, ("server --port 0 " + extraArgs).TrimEnd()) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        var p = Process.Start(psi)!;
        var first = p.StandardOutput.ReadLine();
        if (first is null || !first.StartsWith("port ") || !int.TryParse(first[5..], out var port))
        {
            p.Kill();
            throw new InvalidOperationException($"{path} server: \"{first}\" {p.StandardError.ReadToEnd()}");
        }
        p.ErrorDataReceived += (_, _) => { };
        p.BeginErrorReadLine();
        return new GoServer(p, port);
    }

    public void Dispose()
    {
        if (!_process.HasExited) _process.Kill();
        _process.WaitForExit(5000);
        _process.Dispose();
    }
}

/// <summary>A go-tls client running in the background: its output lines, waited for.</summary>
public sealed class GoClient : IDisposable
{
    private readonly Process _process;
    private readonly List<string> _lines = new();

    private GoClient(Process process) => _process = process;

    public string Output
    {
        get { lock (_lines) return string.Join("\n", _lines); }
    }

    public static GoClient Start(string path, string args)
    {
        var psi = new ProcessStartInfo(path, args) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        var client = new GoClient(Process.Start(psi)!);
        DataReceivedEventHandler keep = (_, e) =>
        {
            if (e.Data is not null) lock (client._lines) client._lines.Add(e.Data);
        };
        client._process.OutputDataReceived += keep;
        client._process.ErrorDataReceived += keep;
        client._process.BeginOutputReadLine();
        client._process.BeginErrorReadLine();
        return client;
    }

    public async Task<bool> WaitForLineAsync(string line, TimeSpan timeout)
    {
        var until = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < until)
        {
            lock (_lines) if (_lines.Contains(line)) return true;
            if (_process.HasExited) break;
            await Task.Delay(20);
        }
        lock (_lines) return _lines.Contains(line);
    }

    public async Task<int> WaitForExitAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        await _process.WaitForExitAsync(cts.Token);
        return _process.ExitCode;
    }

    public void Dispose()
    {
        if (!_process.HasExited) _process.Kill();
        _process.WaitForExit(5000);
        _process.Dispose();
    }
}
