using System.Diagnostics;
using System.Text.Json;
using Collector.Tests.Support;

namespace Collector.Tests.Kernel;

/// <summary>Issue 6: the socket-syscall capture in the real kernel, against real peers.</summary>
[Collection("kernel")]
public sealed class CaptureTests
{
    private static Func<JsonElement, bool> PathIs(string path) => m => m.GetProperty("path").GetString() == path;

    private static Task<CollectorProcess> Collector(params (string Key, string Value)[] env)
    {
        var d = new Dictionary<string, string> { ["TRACE_COMMS"] = "curl,nginx,python3,openssl" };
        foreach (var (k, v) in env) d[k] = v;
        return CollectorProcess.StartAsync(d);
    }

    [Fact]
    public async Task Keep_alive_connection_opened_before_the_collector_is_captured_with_addresses()
    {
        using var nginx = new Nginx();
        var id = Guid.NewGuid().ToString("N");
        File.WriteAllText(Path.Combine(nginx.Www, $"second-{id}.txt"), "second response\n");
        File.WriteAllText(Path.Combine(nginx.Www, $"first-{id}.txt"), "first response\n");
        var script = $$"""
            import http.client, sys
            c = http.client.HTTPConnection('127.0.0.1', {{nginx.PlainPort}})
            c.request('GET', '/first-{{id}}.txt'); c.getresponse().read()
            print('local', c.sock.getsockname()[1], flush=True)
            sys.stdin.readline()
            c.request('GET', '/second-{{id}}.txt'); print(c.getresponse().read().decode(), end='', flush=True)
            """;
        using var client = Process.Start(new ProcessStartInfo(Clients.Python, ["-c", script])
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            UseShellExecute = false,
        })!;
        var first = await client.StandardOutput.ReadLineAsync();
        Assert.StartsWith("local ", first);
        var clientPort = first!["local ".Length..];

        await using var collector = await Collector();
        await client.StandardInput.WriteLineAsync("go");
        await client.StandardInput.FlushAsync();
        Assert.Equal("second response", await client.StandardOutput.ReadLineAsync());
        await client.WaitForExitAsync();

        var found = await collector.WaitForAsync(PathIs($"/second-{id}.txt"), 2);
        Assert.Equal(2, found.Count);
        foreach (var m in found)
        {
            Assert.Equal($"127.0.0.1:{clientPort}", m.GetProperty("ip").GetString());
            Assert.Equal($"127.0.0.1:{nginx.PlainPort}", m.GetProperty("destIp").GetString());
            Assert.Equal("second response\n", m.GetProperty("responsePayload").GetString());
        }
        Assert.Contains(found, m => m.GetProperty("process_name").GetString() == "python3" && m.GetProperty("direction").GetString() == "2");
        Assert.Contains(found, m => m.GetProperty("process_name").GetString() == "nginx" && m.GetProperty("direction").GetString() == "1");
        Assert.DoesNotContain(collector.Messages(), m => PathIs($"/first-{id}.txt")(m));
    }

    [Fact]
    public async Task Ipv6_loopback_addresses_are_whole()
    {
        using var nginx = new Nginx(listenAddress: "::1");
        await using var collector = await Collector();
        var path = $"/v6-{Guid.NewGuid():N}.txt";
        File.WriteAllText(Path.Combine(nginx.Www, path[1..]), "over ipv6\n");
        Assert.Equal("over ipv6\n", Shell.Check("curl", $"-sg --fail http://[::1]:{nginx.PlainPort}{path}"));
        var found = await collector.WaitForAsync(PathIs(path), 2);
        Assert.Equal(2, found.Count);
        foreach (var m in found)
        {
            Assert.Equal($"[::1]:{nginx.PlainPort}", m.GetProperty("destIp").GetString());
            Assert.Matches(@"^\[::1\]:\d+$", m.GetProperty("ip").GetString()!);
        }
    }

    [Theory]
    [InlineData("http")]
    [InlineData("https")]
    public async Task A_one_mebibyte_response_arrives_whole(string scheme)
    {
        using var nginx = new Nginx();
        await using var collector = await Collector(("HTTP_MAX_BODY_BYTES", "2097152"), ("KAFKA_MAX_MESSAGE_BYTES", "4000000"));
        var name = $"big-{Guid.NewGuid():N}.txt";
        var line = new string('x', 1023) + "\n";
        var content = string.Concat(Enumerable.Range(0, 1024).Select(i => $"{i:D6}" + line[6..]));
        Assert.Equal(1 << 20, content.Length);
        File.WriteAllText(Path.Combine(nginx.Www, name), content);
        var port = scheme == "http" ? nginx.PlainPort : nginx.TlsPort;
        Assert.Equal(content, Shell.Check("curl", $"-sk --fail {scheme}://127.0.0.1:{port}/{name}"));
        var found = await collector.WaitForAsync(PathIs("/" + name), 2, TimeSpan.FromSeconds(30));
        Assert.Equal(2, found.Count);
        foreach (var m in found)
        {
            var body = m.GetProperty("responsePayload").GetString()!;
            Assert.Equal(content.Length, body.Length);
            Assert.Equal(content, body);
        }
    }

    [Theory]
    [InlineData("http", "direct_copy", "current set", "copied in power-of-two pieces")]
    [InlineData("https", "direct_copy", "current set", "copied in power-of-two pieces")]
    [InlineData("http", "direct_copy,ringbuf_dynptr", "current set", "per-CPU scratch event")]
    [InlineData("https", "direct_copy,ringbuf_dynptr", "current set", "per-CPU scratch event")]
    [InlineData("http", "task_storage", "compat set", "per-CPU scratch event")]
    [InlineData("https", "task_storage", "compat set", "per-CPU scratch event")]
    public async Task Older_kernels_paths_capture_the_same(string scheme, string featuresOff, string programSet, string copyPath)
    {
        // The paths that older kernels take, run on this one with their features turned off: the
        // ring-buffer dynptr copy in pieces (5.19 to 6.15), the per-CPU scratch copy (before 5.19)
        // and the compat program set (before 5.17: hash-map thread state, bounded loops). Each
        // must capture a small body, a multi-chunk one, and a writev request exactly.
        using var nginx = new Nginx();
        await using var collector = await Collector(("BPF_FEATURES_OFF", featuresOff));
        var variant = collector.LogLines.Single(l => l.Contains("eBPF programs:"));
        Assert.Contains(programSet, variant);
        Assert.Contains(copyPath, variant);
        var id = Guid.NewGuid().ToString("N");
        var small = "a small body\n";
        var big = string.Concat(Enumerable.Range(0, 100).Select(i => $"{i:D6}" + new string('y', 1017) + "\n"));
        File.WriteAllText(Path.Combine(nginx.Www, $"small-{id}.txt"), small);
        File.WriteAllText(Path.Combine(nginx.Www, $"big-{id}.txt"), big);
        var port = scheme == "http" ? nginx.PlainPort : nginx.TlsPort;
        Assert.Equal(small, Shell.Check("curl", $"-sk --fail {scheme}://127.0.0.1:{port}/small-{id}.txt"));
        Assert.Equal(big, Shell.Check("curl", $"-sk --fail {scheme}://127.0.0.1:{port}/big-{id}.txt"));
        foreach (var (name, body) in new[] { ($"small-{id}.txt", small), ($"big-{id}.txt", big) })
        {
            var found = await collector.WaitForAsync(PathIs("/" + name), 2);
            Assert.Equal(2, found.Count);
            Assert.All(found, m => Assert.Equal(body, m.GetProperty("responsePayload").GetString()));
        }
        if (scheme == "http")
        {
            var script = $$"""
                import socket, os
                head = b'POST /echo?fallback-{{id}} HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nConnection: close\r\n\r\n'
                s = socket.create_connection(('127.0.0.1', {{nginx.PlainPort}}))
                os.writev(s.fileno(), [head, b'abc', b'def'])
                print(s.recv(65536).split(b'\r\n')[0].decode())
                """;
            Assert.Equal("HTTP/1.1 200 OK\n", Shell.Python(script));
            var posted = await collector.WaitForAsync(PathIs($"/echo?fallback-{id}"), 2);
            Assert.All(posted, m => Assert.Equal("abcdef", m.GetProperty("requestPayload").GetString()));
        }
    }

    [Fact]
    public async Task A_16_KiB_writev_request_arrives_whole()
    {
        using var nginx = new Nginx();
        await using var collector = await Collector();
        var path = $"/echo?writev={Guid.NewGuid():N}";
        // the body in three iovecs after the header block: one writev call of 16 KiB + headers
        var script = $$"""
            import socket, os
            body = b''.join(b'%05d' % i + b'.' * 59 for i in range(256))
            assert len(body) == 16384
            head = ('POST {{path}} HTTP/1.1\r\nHost: 127.0.0.1:{{nginx.PlainPort}}\r\nContent-Type: text/plain\r\n'
                    'Content-Length: %d\r\nConnection: close\r\n\r\n' % len(body)).encode()
            s = socket.create_connection(('127.0.0.1', {{nginx.PlainPort}}))
            n = os.writev(s.fileno(), [head, body[:5000], body[5000:12000], body[12000:]])
            assert n == len(head) + len(body), n
            data = b''
            while True:
                chunk = s.recv(65536)
                if not chunk: break
                data += chunk
            print(data.split(b'\r\n')[0].decode())
            """;
        Assert.Equal("HTTP/1.1 200 OK\n", Shell.Python(script));
        var expected = string.Concat(Enumerable.Range(0, 256).Select(i => $"{i:D5}" + new string('.', 59)));
        var found = await collector.WaitForAsync(PathIs(path), 2);
        Assert.Equal(2, found.Count);
        foreach (var m in found)
        {
            Assert.Equal(expected, m.GetProperty("requestPayload").GetString());
            Assert.Equal("posted\n", m.GetProperty("responsePayload").GetString());
        }
    }

    [Fact]
    public async Task Sendmmsg_messages_past_the_walk_become_an_exact_counted_gap_and_the_connection_stays_in_step()
    {
        using var nginx = new Nginx();
        await using var collector = await Collector();
        var id = Guid.NewGuid().ToString("N");
        File.WriteAllText(Path.Combine(nginx.Www, $"after-{id}.txt"), "after the vectors\n");
        // one keep-alive connection: a POST in 3 messages of one sendmmsg (walked whole), a POST in
        // 8 messages (the kernel walks 4: the other 4 are a gap of known size), then a plain GET
        // that must still pair and parse on the client's side
        var script = $$"""
            import socket, ctypes, ctypes.util
            libc = ctypes.CDLL(ctypes.util.find_library('c'), use_errno=True)
            class iovec(ctypes.Structure): _fields_ = [('base', ctypes.c_void_p), ('len', ctypes.c_size_t)]
            class msghdr(ctypes.Structure): _fields_ = [('name', ctypes.c_void_p), ('namelen', ctypes.c_uint32), ('iov', ctypes.POINTER(iovec)), ('iovlen', ctypes.c_size_t), ('control', ctypes.c_void_p), ('controllen', ctypes.c_size_t), ('flags', ctypes.c_int)]
            class mmsghdr(ctypes.Structure): _fields_ = [('hdr', msghdr), ('len', ctypes.c_uint32)]
            def sendmmsg(s, parts):
                bufs = [ctypes.create_string_buffer(p, len(p)) for p in parts]
                iovs = (iovec * len(parts))(*[iovec(ctypes.cast(b, ctypes.c_void_p), len(p)) for b, p in zip(bufs, parts)])
                msgs = (mmsghdr * len(parts))()
                for i in range(len(parts)):
                    msgs[i].hdr.iov = ctypes.pointer(iovs[i]); msgs[i].hdr.iovlen = 1
                n = libc.sendmmsg(s.fileno(), msgs, len(parts), 0)
                assert n == len(parts), (n, ctypes.get_errno())
            def response(s):
                data = b''
                while b'\r\n\r\n' not in data: data += s.recv(65536)
                head, _, rest = data.partition(b'\r\n\r\n')
                length = int([l for l in head.split(b'\r\n') if l.lower().startswith(b'content-length:')][0].split(b':')[1])
                while len(rest) < length: rest += s.recv(65536)
                return head.split(b'\r\n')[0].decode()
            def post(path, body, pieces):
                head = ('POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n' % (path, len(body))).encode()
                size = len(body) // pieces
                return [head] + [body[i * size:(i + 1) * size if i < pieces - 1 else len(body)] for i in range(pieces)]
            s = socket.create_connection(('127.0.0.1', {{nginx.PlainPort}}))
            sendmmsg(s, post('/echo?three-{{id}}', b'abcdefghij' * 30, 2)); print(response(s))
            sendmmsg(s, post('/echo?eight-{{id}}', b'0123456789' * 70, 7)); print(response(s))
            s.sendall(b'GET /after-{{id}}.txt HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n'); print(response(s))
            """;
        Assert.Equal("HTTP/1.1 200 OK\nHTTP/1.1 200 OK\nHTTP/1.1 200 OK\n", Shell.Python(script));

        var three = await collector.WaitForAsync(PathIs($"/echo?three-{id}"), 2);
        Assert.All(three, m => Assert.Equal(string.Concat(Enumerable.Repeat("abcdefghij", 30)), m.GetProperty("requestPayload").GetString()));

        // 700 bytes in 7 pieces of 100 after the header: the kernel walks the header and 3 pieces
        var eight = await collector.WaitForAsync(PathIs($"/echo?eight-{id}"), 2);
        var client = Assert.Single(eight, m => m.GetProperty("direction").GetString() == "2");
        var server = Assert.Single(eight, m => m.GetProperty("direction").GetString() == "1");
        Assert.Equal(string.Concat(Enumerable.Repeat("0123456789", 70)), server.GetProperty("requestPayload").GetString());
        Assert.Equal(string.Concat(Enumerable.Repeat("0123456789", 30)), client.GetProperty("requestPayload").GetString());
        Assert.Contains("gap", client.GetProperty("requestHeaders").GetString());

        var after = await collector.WaitForAsync(PathIs($"/after-{id}.txt"), 2);
        Assert.All(after, m => Assert.Equal("after the vectors\n", m.GetProperty("responsePayload").GetString()));

        // the kernel's counters are read every second
        var skipped = 0.0;
        for (var i = 0; i < 50 && skipped < 400; i++, await Task.Delay(100))
            skipped = await collector.MetricAsync("collector_kernel_dropped_bytes_total{reason=\"iov_skipped\"}");
        Assert.Equal(400, skipped);
    }

    [Fact]
    public async Task A_connection_into_a_network_namespace_carries_its_addresses()
    {
        using var ns = new NetNs();
        using var nginx = new Nginx(listenAddress: ns.NsAddress, netns: ns.Name);
        await using var collector = await Collector();
        var path = $"/ns-{Guid.NewGuid():N}.txt";
        File.WriteAllText(Path.Combine(nginx.Www, path[1..]), "from the namespace\n");
        Assert.Equal("from the namespace\n", Shell.Check("curl", $"-s --fail http://{ns.NsAddress}:{nginx.PlainPort}{path}"));
        var found = await collector.WaitForAsync(PathIs(path), 2);
        Assert.Equal(2, found.Count);
        foreach (var m in found)
        {
            Assert.Equal($"{ns.NsAddress}:{nginx.PlainPort}", m.GetProperty("destIp").GetString());
            Assert.Matches($@"^{ns.HostAddress.Replace(".", @"\.")}:\d+$", m.GetProperty("ip").GetString()!);
        }
        Assert.Contains(found, m => m.GetProperty("process_name").GetString() == "nginx");
    }

    [Fact]
    public async Task A_reused_fd_makes_two_connections_without_merging()
    {
        using var nginx = new Nginx();
        await using var collector = await Collector();
        var id = Guid.NewGuid().ToString("N");
        File.WriteAllText(Path.Combine(nginx.Www, $"a-{id}.txt"), "body of a\n");
        File.WriteAllText(Path.Combine(nginx.Www, $"b-{id}.txt"), "body of b\n");
        // the first connection is closed with its response only half read... then the same fd
        // number carries a second connection
        var script = $$"""
            import socket
            fds = []
            for name in ['a', 'b']:
                s = socket.create_connection(('127.0.0.1', {{nginx.PlainPort}}))
                fds.append(s.fileno())
                s.sendall(('GET /%s-{{id}}.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' % name).encode())
                data = b''
                while True:
                    c = s.recv(65536)
                    if not c: break
                    data += c
                s.close()
            print(fds[0] == fds[1], fds[0])
            """;
        var output = Shell.Python(script).Trim().Split(' ');
        Assert.Equal("True", output[0]);
        var a = await collector.WaitForAsync(PathIs($"/a-{id}.txt"), 2);
        var b = await collector.WaitForAsync(PathIs($"/b-{id}.txt"), 2);
        Assert.Equal(2, a.Count);
        Assert.Equal(2, b.Count);
        Assert.All(a, m => Assert.Equal("body of a\n", m.GetProperty("responsePayload").GetString()));
        Assert.All(b, m => Assert.Equal("body of b\n", m.GetProperty("responsePayload").GetString()));
        var clientA = Assert.Single(a, m => m.GetProperty("direction").GetString() == "2");
        var clientB = Assert.Single(b, m => m.GetProperty("direction").GetString() == "2");
        Assert.Equal(output[1], clientA.GetProperty("socket_id").GetString());
        Assert.Equal(output[1], clientB.GetProperty("socket_id").GetString());
        Assert.NotEqual(clientA.GetProperty("ip").GetString(), clientB.GetProperty("ip").GetString());
    }

    [Fact]
    public async Task Drop_counters_move_when_the_ring_buffer_is_tiny_and_the_collector_keeps_running()
    {
        using var nginx = new Nginx();
        await using var collector = await Collector(("RING_BUFFER_MB", "1"), ("CAPTURE_CHUNKS_PER_CALL", "64"));
        var name = $"load-{Guid.NewGuid():N}.bin";
        File.WriteAllText(Path.Combine(nginx.Www, name), new string('z', 4 << 20));
        // 48 downloads of 4 MiB, 8 at a time: far more than a 1 MiB ring holds between reads
        Shell.Check("bash", $"-c \"seq 48 | xargs -P 8 -I{{}} curl -s -o /dev/null http://127.0.0.1:{nginx.PlainPort}/{name}?n={{}}\"",
            TimeSpan.FromSeconds(120));
        var deadline = DateTime.UtcNow.AddSeconds(10);
        double dropped = 0;
        while (DateTime.UtcNow < deadline && dropped == 0)
        {
            dropped = await collector.MetricAsync("collector_kernel_drops_total{reason=\"ringbuf_full\"}");
            await Task.Delay(300);
        }
        Assert.True(dropped > 0, "no ring buffer drop counted");
        Assert.True(await collector.MetricAsync("collector_kernel_dropped_bytes_total{reason=\"ringbuf_full\"}") > 0);
        // still alive and still capturing
        using var http = new HttpClient();
        Assert.Equal("ok\n", await http.GetStringAsync($"http://127.0.0.1:{collector.MetricsPort}/healthz"));
        var path = $"/after-{Guid.NewGuid():N}.txt";
        File.WriteAllText(Path.Combine(nginx.Www, path[1..]), "still here\n");
        Shell.Check("curl", $"-s --fail http://127.0.0.1:{nginx.PlainPort}{path}");
        Assert.Equal(2, (await collector.WaitForAsync(PathIs(path), 2)).Count);
    }

    [Theory]
    [InlineData("CAPTURE_ALL")]
    [InlineData("CAPTURE_SSL")]
    public async Task Capture_switches_apply_in_the_kernel(string setting)
    {
        using var nginx = new Nginx();
        await using var collector = await Collector((setting, "false"));
        var id = Guid.NewGuid().ToString("N");
        File.WriteAllText(Path.Combine(nginx.Www, $"p-{id}.txt"), "plain\n");
        File.WriteAllText(Path.Combine(nginx.Www, $"t-{id}.txt"), "tls\n");
        Shell.Check("curl", $"-s --fail http://127.0.0.1:{nginx.PlainPort}/p-{id}.txt");
        Shell.Check("curl", $"-sk --fail https://127.0.0.1:{nginx.TlsPort}/t-{id}.txt");
        var expected = setting == "CAPTURE_ALL" ? $"/t-{id}.txt" : $"/p-{id}.txt";
        var other = setting == "CAPTURE_ALL" ? $"/p-{id}.txt" : $"/t-{id}.txt";
        Assert.Equal(2, (await collector.WaitForAsync(PathIs(expected), 2)).Count);
        // a last exchange of the captured kind: the other one's events, earlier, are handled by then
        File.WriteAllText(Path.Combine(nginx.Www, $"m-{id}.txt"), "marker\n");
        Shell.Check("curl", setting == "CAPTURE_ALL" ? $"-sk --fail https://127.0.0.1:{nginx.TlsPort}/m-{id}.txt" : $"-s --fail http://127.0.0.1:{nginx.PlainPort}/m-{id}.txt");
        await collector.WaitForAsync(PathIs($"/m-{id}.txt"), 2);
        Assert.DoesNotContain(collector.Messages(), m => PathIs(other)(m));
        var source = setting == "CAPTURE_ALL" ? "syscall" : "openssl";
        Assert.Equal(0, await collector.MetricAsync($"collector_bytes_read_total{{source=\"{source}\"}}"));
    }

    [Fact]
    public async Task Without_probe_all_pid_only_processes_in_containers_are_traced()
    {
        using var nginx = new Nginx();
        // no TRACE_* selection: the container rule decides (mount and pid namespaces other than the host's)
        await using var collector = await CollectorProcess.StartAsync(new Dictionary<string, string> { ["PROBE_ALL_PID"] = "false" });
        var id = Guid.NewGuid().ToString("N");
        foreach (var name in new[] { "host", "service", "ctr" })
            File.WriteAllText(Path.Combine(nginx.Www, $"{name}-{id}.txt"), name + "\n");
        Shell.Check("curl", $"-s --fail http://127.0.0.1:{nginx.PlainPort}/host-{id}.txt");
        // a host service with a private mount namespace only (systemd's PrivateTmp): not a container
        Shell.Check("unshare", $"--mount curl -s --fail http://127.0.0.1:{nginx.PlainPort}/service-{id}.txt");
        // a container: its own mount and pid namespaces
        Shell.Check("unshare", $"--mount --pid --fork curl -s --fail http://127.0.0.1:{nginx.PlainPort}/ctr-{id}.txt");
        var found = await collector.WaitForAsync(PathIs($"/ctr-{id}.txt"), 1);
        var single = Assert.Single(found);
        Assert.Equal("2", single.GetProperty("direction").GetString()); // curl in the container; nginx is a host process
        // the container's request came last: the two before it, had they been traced, were handled first
        Assert.DoesNotContain(collector.Messages(), m => PathIs($"/host-{id}.txt")(m));
        Assert.DoesNotContain(collector.Messages(), m => PathIs($"/service-{id}.txt")(m));
    }

    [Fact]
    public async Task The_collector_never_traces_itself()
    {
        await using var collector = await CollectorProcess.StartAsync(new Dictionary<string, string> { ["PROBE_ALL_PID"] = "true" });
        var path = $"/healthz?self={Guid.NewGuid():N}";
        Shell.Check("curl", $"-s --fail http://127.0.0.1:{collector.MetricsPort}{path}");
        var found = await collector.WaitForAsync(PathIs(path), 1);
        var m = Assert.Single(found);
        Assert.Equal("2", m.GetProperty("direction").GetString());
        Assert.Equal("curl", m.GetProperty("process_name").GetString());
        // the collector wrote its answer before curl read it: its own side, had it been traced,
        // came before curl's in the ring buffer and would be here by now
        Assert.DoesNotContain(collector.Messages(), x => x.GetProperty("process_id").GetString() == collector.Pid.ToString());
    }

    [Fact]
    public async Task A_thread_found_untraced_is_judged_again_when_it_execs_a_traced_program()
    {
        using var nginx = new Nginx();
        await using var collector = await Collector();
        var path = $"/after-exec-{Guid.NewGuid():N}.txt";
        File.WriteAllText(Path.Combine(nginx.Www, path[1..]), "traced after exec\n");
        // sh (not selected) reads a file first: the kernel remembers this thread as untraced; the
        // same thread then becomes curl, which is selected
        var output = Shell.Check("sh", $"-c \"read line < /etc/hostname; exec curl -s --fail http://127.0.0.1:{nginx.PlainPort}{path}\"");
        Assert.Equal("traced after exec\n", output);
        var found = await collector.WaitForAsync(PathIs(path), 2);
        Assert.Contains(found, m => m.GetProperty("process_name").GetString() == "curl" && m.GetProperty("direction").GetString() == "2");
        Assert.Contains(found, m => m.GetProperty("process_name").GetString() == "nginx" && m.GetProperty("direction").GetString() == "1");
    }

    [Fact]
    public async Task A_tls_call_whose_return_is_never_seen_is_counted_when_another_session_s_call_begins()
    {
        // native/tls_longjmp.c: SSL_write on one session longjmps out of the library (no return
        // for the probe), then another session's SSL_write begins at the same stack depth
        await using var collector = await Collector(("TRACE_COMMS", "tls_longjmp"));
        const string sample = "collector_kernel_drops_total{reason=\"tls_calls_overlapped\"}";
        Assert.Equal(0, await collector.MetricAsync(sample));
        Assert.Equal("done\n", Shell.Check(Path.Combine(Repo.Build, "tls_longjmp"), ""));
        var counted = 0.0;
        for (var i = 0; i < 50 && counted == 0; i++)
        {
            await Task.Delay(200); // kernel counters are read once per poll interval
            counted = await collector.MetricAsync(sample);
        }
        Assert.Equal(1, counted);
    }

    [Fact]
    public async Task A_tls_library_loaded_by_a_new_process_is_probed_within_a_second_of_exec()
    {
        using var nginx = new Nginx();
        await using var collector = await Collector();
        // a private copy of libssl: another (device, inode) that the start-up scan never saw
        var dir = Repo.TempDir("libssl-copy");
        File.Copy("/usr/lib/x86_64-linux-gnu/libssl.so.3", Path.Combine(dir, "libssl.so.3"));
        var path = $"/copy-{Guid.NewGuid():N}.txt";
        File.WriteAllText(Path.Combine(nginx.Www, path[1..]), "via a copied libssl\n");
        var script = $$"""
            import time, ssl, urllib.request
            time.sleep(1.5)
            print(urllib.request.urlopen('https://127.0.0.1:{{nginx.TlsPort}}{{path}}', context=ssl._create_unverified_context()).read().decode(), end='')
            """;
        var stdout = Shell.Python(script, new Dictionary<string, string> { ["LD_LIBRARY_PATH"] = dir });
        Assert.Equal("via a copied libssl\n", stdout);
        var found = await collector.WaitForAsync(PathIs(path), 2);
        Assert.Contains(found, m => m.GetProperty("process_name").GetString() == "python3");
        Assert.Contains(Path.Combine(dir, "libssl.so.3"), collector.Log);
    }

    [Fact]
    public async Task Tls_connections_whose_plaintext_no_probe_sees_are_counted()
    {
        await using var collector = await Collector();
        var dir = Repo.TempDir("www-mode");
        Tls.MakeSelfSigned(dir);
        File.WriteAllText(Path.Combine(dir, "f.txt"), "served by -WWW\n");
        var port = Repo.FreePort();
        // -WWW reads and writes through a BIO that calls OpenSSL's internal functions
        using var server = Process.Start(new ProcessStartInfo("openssl", $"s_server -accept {port} -cert cert.pem -key key.pem -WWW -quiet")
        {
            WorkingDirectory = dir,
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        })!;
        try
        {
            Nginx.WaitForListen(port);
            var before = await collector.MetricAsync("collector_tls_connections_unseen_total");
            Assert.Equal("served by -WWW\n", Shell.Check("curl", $"-sk --fail https://127.0.0.1:{port}/f.txt"));
            var deadline = DateTime.UtcNow.AddSeconds(10);
            while (DateTime.UtcNow < deadline && await collector.MetricAsync("collector_tls_connections_unseen_total") <= before)
                await Task.Delay(200);
            Assert.True(await collector.MetricAsync("collector_tls_connections_unseen_total") > before);
            Assert.True(await collector.MetricAsync("collector_tls_unseen_bytes_total") > 0);
            // curl's own side is seen at its libssl
            Assert.Single(await collector.WaitForAsync(PathIs("/f.txt"), 1));
        }
        finally
        {
            server.Kill(entireProcessTree: true);
        }
    }

    [Fact]
    public async Task Processes_are_rescanned_every_uprobe_poll_interval()
    {
        await using var collector = await Collector(("UPROBE_POLL_INTERVAL", "0.01")); // 0.6 s
        var first = await collector.MetricAsync("collector_process_scans_total{trigger=\"full\"}");
        var deadline = DateTime.UtcNow.AddSeconds(10);
        double now;
        while ((now = await collector.MetricAsync("collector_process_scans_total{trigger=\"full\"}")) < first + 2 && DateTime.UtcNow < deadline)
            await Task.Delay(100);
        Assert.True(now >= first + 2, $"full scans went from {first} to {now} in 10 s with a 0.6 s interval");
    }
}
