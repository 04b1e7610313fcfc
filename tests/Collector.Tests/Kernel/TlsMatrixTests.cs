using System.Diagnostics;
using Collector.Tests.Support;

namespace Collector.Tests.Kernel;

/// <summary>Issue 6's TLS matrix: every client's plaintext is captured at its TLS library, tied to
/// its socket without struct offsets, once per traced side, bodies exact, no ciphertext.</summary>
[Collection("kernel")]
public sealed class TlsMatrixTests : IAsyncLifetime
{
    private Nginx _nginx = null!;
    private string _sServerDir = null!;
    private CollectorProcess _collector = null!;

    public async Task InitializeAsync()
    {
        _nginx = new Nginx();
        _sServerDir = Repo.TempDir("s_server");
        Tls.MakeSelfSigned(_sServerDir);
        _collector = await CollectorProcess.StartAsync(new Dictionary<string, string>
        {
            ["TRACE_COMMS"] = Clients.TraceComms,
            ["TRACE_PIDS"] = Environment.ProcessId.ToString(), // the .NET HttpClient runs in this process
        });
        // node carries OpenSSL in its own binary, whose probes are attached when a node process is
        // first seen (within a second of its exec). A short node client started before that would
        // finish unseen: the first node process here lives until its attachment is logged.
        using var node = Process.Start(new ProcessStartInfo("node", ["-e", "setTimeout(() => {}, 60000)"]))!;
        try
        {
            var attached = await _collector.WaitForLogAsync(l => l.Contains("uprobes to") && l.Contains("/node"), TimeSpan.FromSeconds(20));
            Assert.True(attached is not null, "node's OpenSSL was not attached within 20 s:\n" + _collector.Log);
        }
        finally
        {
            node.Kill();
        }
    }

    public async Task DisposeAsync()
    {
        await _collector.DisposeAsync();
        _nginx.Dispose();
    }

    [Fact]
    public async Task Tls_inside_tls_through_an_https_proxy_is_captured_from_the_inner_session()
    {
        var name = $"tunnel-{Guid.NewGuid():N}.txt";
        var content = "through the proxy\n" + string.Concat(Enumerable.Range(0, 20).Select(i => $"line {i:D2} " + new string('t', 1000) + "\n"));
        File.WriteAllText(Path.Combine(_nginx.Www, name), content);
        using var proxy = new HttpsProxy(_sServerDir);
        // curl's request to nginx goes in a TLS session that runs inside its TLS session with the
        // proxy: each SSL_write to nginx's session calls SSL_write of the proxy's on the same thread
        var body = Shell.Check("curl", $"-sk --fail --proxy-insecure -x https://127.0.0.1:{proxy.Port} https://127.0.0.1:{_nginx.TlsPort}/{name}");
        Assert.Equal(content, body);

        var path = "/" + name;
        await _collector.WaitForAsync(m => m.GetProperty("path").GetString() == path && m.GetProperty("process_name").GetString() == "curl", 1);
        await Marker();
        var found = _collector.Messages().Where(m => m.GetProperty("path").GetString() == path).ToList();
        var clientSide = Assert.Single(found, m => m.GetProperty("process_name").GetString() == "curl");
        Assert.Equal("2", clientSide.GetProperty("direction").GetString());
        Assert.Equal("200", clientSide.GetProperty("statusCode").GetString());
        Assert.Equal(content, clientSide.GetProperty("responsePayload").GetString());
        Assert.Equal($"127.0.0.1:{proxy.Port}", clientSide.GetProperty("destIp").GetString()); // curl's socket goes to the proxy
        Assert.Single(found, m => m.GetProperty("process_name").GetString() == "nginx");
        // the CONNECT itself, from the proxy's session, before it carried the inner one
        var connect = _collector.Messages().Where(m => m.GetProperty("method").GetString() == "CONNECT" &&
            m.GetProperty("path").GetString() == $"127.0.0.1:{_nginx.TlsPort}" && m.GetProperty("process_name").GetString() == "curl").ToList();
        Assert.Equal("200", Assert.Single(connect).GetProperty("statusCode").GetString());
        Assert.Equal(clientSide.GetProperty("ip").GetString(), connect[0].GetProperty("ip").GetString());
    }

    /// <summary>An exchange through nginx, both sides captured: whatever events came before it
    /// (a duplicate, another session's records) have been handled by then.</summary>
    private async Task Marker()
    {
        var marker = $"/marker-{Guid.NewGuid():N}.txt";
        File.WriteAllText(Path.Combine(_nginx.Www, marker[1..]), "marker\n");
        Assert.Equal("marker\n", await Clients.GetAsync("curl", $"https://127.0.0.1:{_nginx.TlsPort}{marker}"));
        await _collector.WaitForAsync(m => m.GetProperty("path").GetString() == marker, 2);
    }

    public static IEnumerable<object[]> Matrix() =>
        from client in Clients.Names
        from server in new[] { "nginx", "openssl" }
        select new object[] { client, server };

    [Theory]
    [MemberData(nameof(Matrix))]
    public async Task Tls_exchange_is_captured_once_per_side_with_exact_bodies(string client, string server)
    {
        var name = $"f-{Guid.NewGuid():N}.txt";
        // a body larger than one TLS record, with a line per KiB, so that any cut shows
        var content = string.Concat(Enumerable.Range(0, 40).Select(i => $"line {i:D4} " + new string((char)('a' + i % 26), 1013) + "\n"));
        string body;
        int port;
        if (server == "nginx")
        {
            File.WriteAllText(Path.Combine(_nginx.Www, name), content);
            port = _nginx.TlsPort;
            body = await Clients.GetAsync(client, $"https://127.0.0.1:{port}/{name}");
        }
        else
        {
            await using var sServer = SServer.Start(_sServerDir, content);
            port = sServer.Port;
            body = await Clients.GetAsync(client, $"https://127.0.0.1:{port}/{name}");
        }
        Assert.Equal(content, body);

        var path = "/" + name;
        var found = await _collector.WaitForAsync(m => m.GetProperty("path").GetString() == path, 2);
        // a duplicate would come from events before a later exchange's: both sides of one through
        // nginx mark that everything before it was handled
        await Marker();
        found = _collector.Messages().Where(m => m.GetProperty("path").GetString() == path).ToList();
        Assert.True(found.Count == 2, $"expected both sides of {path}, got: " +
            string.Join("; ", found.Select(m => $"{m.GetProperty("process_name")} dir {m.GetProperty("direction")}")) +
            "\nmetrics:\n" + string.Join("\n", (await _collector.MetricsAsync()).Split('\n').Where(l => l.Contains("drop") && !l.EndsWith(" 0") && !l.StartsWith('#'))));
        var clientSide = Assert.Single(found, m => m.GetProperty("direction").GetString() == "2");
        var serverSide = Assert.Single(found, m => m.GetProperty("direction").GetString() == "1");
        Assert.Equal(Clients.ProcessName(client), clientSide.GetProperty("process_name").GetString());
        Assert.Equal(server, serverSide.GetProperty("process_name").GetString());
        foreach (var m in found)
        {
            WalkingSkeletonTests.AssertAllStrings(m);
            Assert.Equal(content, m.GetProperty("responsePayload").GetString());
            Assert.Equal("200", m.GetProperty("statusCode").GetString());
            Assert.Equal($"127.0.0.1:{port}", m.GetProperty("destIp").GetString());
            Assert.Equal(clientSide.GetProperty("ip").GetString(), m.GetProperty("ip").GetString());
        }
        foreach (var line in _collector.Lines)
        {
            Assert.DoesNotContain("\\u0016\\u0003", line);
            Assert.DoesNotContain("\\u0017\\u0003", line);
        }
    }
}

/// <summary>openssl s_server in its interactive mode, which moves data with SSL_read/SSL_write:
/// it prints what the client sent on stdout and sends what we write on stdin. We answer once the
/// request's header block is complete. (Its -WWW mode goes through a BIO that calls OpenSSL's
/// internal functions, which no uprobe on the exported API sees: the collector counts such
/// connections in collector_tls_connections_unseen_total.)</summary>
/// <summary>An HTTPS proxy on loopback (python3's ssl): a TLS session to the client, CONNECT, then
/// bytes both ways to the target. The client's TLS to the origin then runs inside the proxy's.</summary>
public sealed class HttpsProxy : IDisposable
{
    private const string Script = """
        import socket, ssl, sys, threading
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(sys.argv[2], sys.argv[3])
        listener = socket.create_server(('127.0.0.1', int(sys.argv[1])))
        def pipe(a, b):
            try:
                while True:
                    d = a.recv(65536)
                    if not d: break
                    b.sendall(d)
            except OSError: pass
            finally:
                try: b.shutdown(socket.SHUT_WR)
                except OSError: pass
        def serve(raw):
            c = ctx.wrap_socket(raw, server_side=True)
            head = b''
            while b'\r\n\r\n' not in head:
                d = c.recv(4096)
                if not d: return
                head += d
            host, port = head.split(b' ')[1].decode().rsplit(':', 1)
            if host != '127.0.0.1': return  # loopback only
            upstream = socket.create_connection((host, int(port)))
            c.sendall(b'HTTP/1.1 200 Connection established\r\n\r\n')
            t = threading.Thread(target=pipe, args=(upstream, c)); t.start()
            pipe(c, upstream); t.join()
        while True:
            raw, _ = listener.accept()
            threading.Thread(target=serve, args=(raw,), daemon=True).start()
        """;

    private readonly Process _process;
    public int Port { get; }

    public HttpsProxy(string certDir)
    {
        Port = Repo.FreePort();
        _process = Process.Start(new ProcessStartInfo(Clients.Python,
            ["-c", Script, Port.ToString(), Path.Combine(certDir, "cert.pem"), Path.Combine(certDir, "key.pem")])
        {
            UseShellExecute = false,
            RedirectStandardError = true,
        })!;
        Nginx.WaitForListen(Port);
    }

    public void Dispose()
    {
        try { _process.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
        _process.WaitForExit(5000);
        _process.Dispose();
    }
}

public sealed class SServer : IAsyncDisposable
{
    private readonly Process _process;
    private readonly Task _responder;
    public int Port { get; }

    private SServer(string dir, string body)
    {
        Port = Repo.FreePort();
        _process = Process.Start(new ProcessStartInfo("openssl",
            $"s_server -accept {Port} -cert cert.pem -key key.pem -quiet -naccept 1")
        {
            WorkingDirectory = dir,
            UseShellExecute = false,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        })!;
        _responder = Task.Run(async () =>
        {
            var seen = new System.Text.StringBuilder();
            var buf = new char[4096];
            while (!seen.ToString().Contains("\r\n\r\n"))
            {
                var n = await _process.StandardOutput.ReadAsync(buf);
                if (n == 0) throw new InvalidOperationException("s_server ended before the request: " + seen);
                seen.Append(buf, 0, n);
            }
            var bytes = System.Text.Encoding.UTF8.GetByteCount(body);
            await _process.StandardInput.WriteAsync($"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {bytes}\r\n\r\n{body}");
            await _process.StandardInput.FlushAsync();
        });
        Nginx.WaitForListen(Port); // no test connection: it would take s_server's only accept
    }

    public static SServer Start(string dir, string body) => new(dir, body);

    public async ValueTask DisposeAsync()
    {
        await _responder.WaitAsync(TimeSpan.FromSeconds(20));
        try { _process.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
        _process.WaitForExit(5000);
        _process.Dispose();
    }
}
