using System.Diagnostics;
using System.Text;
using System.Text.Json;

namespace Collector.Tests.Support;

/// <summary>The HTTP/2 and gRPC peers of tests/Peers: python3-h2 (h2_peer.py), node's http2
/// (node_h2.js) and the .NET gRPC peer (GrpcPeer, built by tests/Peers/build-peers.sh into
/// build/peers/grpc). Each server prints "port N" and serves until killed; each client exits 0
/// after "done" once every answer checked out.</summary>
public static class H2Peers
{
    public static string Dir => Path.Combine(Repo.Root, "tests", "Peers");
    public static string H2Peer => Path.Combine(Dir, "h2_peer.py");
    public static string NodeH2 => Path.Combine(Dir, "node_h2.js");
    public static string GrpcPeer => Path.Combine(Repo.Build, "peers", "grpc", "GrpcPeer");

    /// <summary>The process names (comm) of the peers, for TRACE_COMMS.</summary>
    public const string TraceComms = "curl,nginx,python3,node,GrpcPeer";

    private static readonly Lazy<string> Built = new(() =>
    {
        // the script takes a file lock: test classes (or test runs) that build at once wait for one another
        var (code, o, e) = Shell.Run("bash", Path.Combine(Dir, "build-peers.sh"), TimeSpan.FromMinutes(5));
        if (code != 0) throw new InvalidOperationException($"build-peers.sh exited {code}: {e}{o}");
        return GrpcPeer;
    }, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>Builds the gRPC peer once per test run (skipped when it is up to date).</summary>
    public static string EnsureGrpcPeerBuilt() => Built.Value;

    /// <summary>Runs a peer client to its end; its stdout, or an exception with stderr when it fails.</summary>
    public static string RunClient(string file, IEnumerable<string> args, TimeSpan? timeout = null)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var o = p.StandardOutput.ReadToEndAsync();
        var e = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(timeout ?? TimeSpan.FromSeconds(60)))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"{file} {string.Join(' ', args)} did not finish: {o.Result}{e.Result}");
        }
        p.WaitForExit();
        if (p.ExitCode != 0 || !o.Result.Contains("done"))
            throw new InvalidOperationException($"{file} {string.Join(' ', args)} exited {p.ExitCode}:\n{e.Result}{o.Result}");
        return o.Result;
    }

    public static string PythonClient(int port, bool tls, string tag, params string[] scenarios) =>
        RunClient(Clients.Python, [H2Peer, "client", "--port", port.ToString(), .. tls ? new[] { "--tls" } : [], "--tag", tag, .. scenarios]);

    public static string NodeClient(string url, string tag) => RunClient("node", [NodeH2, "client", "--url", url, "--tag", tag]);

    public static string GrpcClient(string url, string tag, string scenario) =>
        RunClient(EnsureGrpcPeerBuilt(), ["client", "--url", url, "--tag", tag, scenario]);

    /// <summary>Sum of every sample of a metric family (any labels), 0 when absent.</summary>
    public static async Task<double> MetricSumAsync(CollectorProcess collector, string family)
    {
        var sum = 0.0;
        foreach (var line in (await collector.MetricsAsync()).Split('\n'))
        {
            if (line.StartsWith('#') || !line.StartsWith(family)) continue;
            var rest = line[family.Length..];
            if (rest.Length == 0 || (rest[0] != '{' && rest[0] != ' ')) continue;
            sum += double.Parse(line[(line.LastIndexOf(' ') + 1)..], System.Globalization.CultureInfo.InvariantCulture);
        }
        return sum;
    }

    /// <summary>Polls a metric until it reaches at least the value (counters are updated as the
    /// events are handled, which may trail the message that proved the traffic was seen).</summary>
    public static async Task<double> WaitForMetricAsync(Func<Task<double>> read, double atLeast, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(10));
        var value = await read();
        while (value < atLeast && DateTime.UtcNow < deadline)
        {
            await Task.Delay(200);
            value = await read();
        }
        return value;
    }
}

/// <summary>A peer server process: started, its "port N" line read, its output kept for failures.</summary>
public sealed class PeerServer : IDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _output = new();
    public int Port { get; }
    public string Output { get { lock (_output) return _output.ToString(); } }

    public PeerServer(string file, IEnumerable<string> args)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        var port = new TaskCompletionSource<int>(TaskCreationOptions.RunContinuationsAsynchronously);
        _process = new Process { StartInfo = psi, EnableRaisingEvents = true };
        _process.OutputDataReceived += (_, e) =>
        {
            if (e.Data is null) return;
            lock (_output) _output.AppendLine(e.Data);
            if (e.Data.StartsWith("port ") && int.TryParse(e.Data["port ".Length..], out var n)) port.TrySetResult(n);
        };
        _process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (_output) _output.AppendLine(e.Data); };
        _process.Exited += (_, _) => port.TrySetException(new InvalidOperationException("exited"));
        _process.Start();
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
        try
        {
            Port = port.Task.WaitAsync(TimeSpan.FromSeconds(30)).GetAwaiter().GetResult();
        }
        catch (Exception e) when (e is InvalidOperationException or TimeoutException)
        {
            Dispose();
            throw new InvalidOperationException($"{file} {string.Join(' ', args)} did not print its port ({e.Message}):\n{Output}");
        }
    }

    public static PeerServer Python(string? certDir) =>
        new(Clients.Python, [H2Peers.H2Peer, "server", .. TlsArgs(certDir)]);

    public static PeerServer Node(string? certDir) => new("node", [H2Peers.NodeH2, "server", .. TlsArgs(certDir)]);

    public static PeerServer Grpc(string? certDir) => new(H2Peers.EnsureGrpcPeerBuilt(), ["server", "--port", "0", .. TlsArgs(certDir)]);

    private static string[] TlsArgs(string? certDir) =>
        certDir is null ? [] : ["--tls", Path.Combine(certDir, "cert.pem"), Path.Combine(certDir, "key.pem")];

    public void Dispose()
    {
        try { _process.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
        _process.WaitForExit(5000);
        _process.Dispose();
    }
}

/// <summary>nginx with HTTP/2 listeners (nginx 1.22: `listen ... http2`; `http2 on;` came in
/// 1.25.1): TLS with ALPN h2, and h2c with prior knowledge. gzip for text/plain; sendfile off
/// (sendfile's bytes never pass through user memory, so no probe would see them). POST /json is
/// proxied to a plain backend on another port, so that nginx reads the whole request body before
/// it answers: with `return` it answers at once and resets the stream, which curl 7.88 may report
/// as an error (exit 92), and the request body may not have been sent yet.</summary>
public sealed class NginxH2 : IDisposable
{
    private readonly Process _process;
    public string Dir { get; }
    public string Www => Path.Combine(Dir, "www");
    public int TlsPort { get; }
    public int H2cPort { get; }
    public int BackendPort { get; }
    public const string JsonBody = """{"ok":true,"items":[1,2,3]}""";

    public NginxH2()
    {
        Dir = Repo.TempDir("nginx-h2");
        Directory.CreateDirectory(Www);
        Tls.MakeSelfSigned(Dir);
        TlsPort = Repo.FreePort();
        H2cPort = Repo.FreePort();
        BackendPort = Repo.FreePort();
        File.WriteAllText(Path.Combine(Dir, "nginx.conf"), $$"""
            daemon off;
            worker_processes 1;
            pid {{Dir}}/nginx.pid;
            error_log {{Dir}}/error.log;
            events { worker_connections 256; }
            http {
              access_log off;
              sendfile off;
              client_body_temp_path {{Dir}}/body;
              proxy_temp_path {{Dir}}/proxy;
              fastcgi_temp_path {{Dir}}/fastcgi;
              uwsgi_temp_path {{Dir}}/uwsgi;
              scgi_temp_path {{Dir}}/scgi;
              keepalive_requests 10000;
              gzip on;
              gzip_types text/plain;
              gzip_min_length 256;
              server {
                listen 127.0.0.1:{{TlsPort}} ssl http2;
                listen 127.0.0.1:{{H2cPort}} http2;
                ssl_certificate {{Dir}}/cert.pem;
                ssl_certificate_key {{Dir}}/key.pem;
                root {{Www}};
                location = /json { proxy_pass http://127.0.0.1:{{BackendPort}}/json-backend; }
              }
              server {
                listen 127.0.0.1:{{BackendPort}};
                location = /json-backend { default_type application/json; return 200 '{{JsonBody}}'; }
              }
            }
            """);
        _process = Process.Start(new ProcessStartInfo("nginx", $"-c {Dir}/nginx.conf -e {Dir}/error.log")
        {
            UseShellExecute = false,
            RedirectStandardError = true,
        })!;
        Nginx.WaitForListen(TlsPort);
        Nginx.WaitForListen(H2cPort);
        Nginx.WaitForListen(BackendPort);
    }

    public void Dispose()
    {
        try { _process.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
        _process.WaitForExit(5000);
        _process.Dispose();
    }
}

/// <summary>A protobuf message of the gRPC peer (tests/Peers/GrpcPeer/peer.proto): 1 text, 2 n, 3 data.</summary>
public sealed record PeerMsg(string Text, long N, byte[] Data)
{
    public bool Equals(PeerMsg? other) => other is not null && Text == other.Text && N == other.N && Data.AsSpan().SequenceEqual(other.Data);
    public override int GetHashCode() => HashCode.Combine(Text, N, Data.Length);
    public override string ToString() => $"{{text \"{Text}\", n {N}, data {Data.Length} bytes}}";
}

/// <summary>Reads gRPC payloads as the collector sends them, by hand: base64 of one
/// length-prefixed message (flag 0, 4-byte big-endian length, protobuf), and the protobuf wire
/// format (varints and length-delimited fields).</summary>
public static class GrpcWire
{
    /// <summary>null for an empty payload (that side had no message at this index).</summary>
    public static PeerMsg? Decode(string payload)
    {
        if (payload.Length == 0) return null;
        var bytes = Convert.FromBase64String(payload);
        if (bytes.Length < 5) throw new FormatException($"a gRPC message of {bytes.Length} bytes");
        if (bytes[0] != 0) throw new FormatException($"compressed flag {bytes[0]}: the collector sends messages uncompressed");
        var length = (bytes[1] << 24) | (bytes[2] << 16) | (bytes[3] << 8) | bytes[4];
        if (length != bytes.Length - 5) throw new FormatException($"prefix says {length} bytes, {bytes.Length - 5} follow: not exactly one message");
        return ReadMsg(bytes.AsSpan(5));
    }

    public static PeerMsg? TryDecode(string? payload)
    {
        try { return payload is null ? null : Decode(payload); }
        catch (FormatException) { return null; }
    }

    public static PeerMsg ReadMsg(ReadOnlySpan<byte> b)
    {
        string text = "";
        long n = 0;
        byte[] data = [];
        var i = 0;
        while (i < b.Length)
        {
            var key = Varint(b, ref i);
            var field = (int)(key >> 3);
            switch ((int)(key & 7))
            {
                case 0:
                    var v = Varint(b, ref i);
                    if (field == 2) n = (long)v;
                    break;
                case 2:
                    var len = (int)Varint(b, ref i);
                    if (len < 0 || i + len > b.Length) throw new FormatException("a length-delimited field runs past the end");
                    var slice = b.Slice(i, len);
                    if (field == 1) text = Encoding.UTF8.GetString(slice);
                    else if (field == 3) data = slice.ToArray();
                    i += len;
                    break;
                default:
                    throw new FormatException($"wire type {key & 7} of field {field}");
            }
        }
        return new PeerMsg(text, n, data);
    }

    private static ulong Varint(ReadOnlySpan<byte> b, ref int i)
    {
        ulong v = 0;
        for (var shift = 0; shift < 64; shift += 7)
        {
            if (i >= b.Length) throw new FormatException("a varint runs past the end");
            var x = b[i++];
            v |= (ulong)(x & 0x7f) << shift;
            if ((x & 0x80) == 0) return v;
        }
        throw new FormatException("a varint longer than 10 bytes");
    }
}

/// <summary>Reading an Akto message's fields.</summary>
public static class AktoFields
{
    public static string Field(this JsonElement m, string field) =>
        m.TryGetProperty(field, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString()! : "";

    public static Dictionary<string, string> HeaderMap(this JsonElement m, string field)
    {
        var json = m.Field(field);
        return json.Length == 0 ? new(StringComparer.OrdinalIgnoreCase)
            : new(JsonSerializer.Deserialize<Dictionary<string, string>>(json)!, StringComparer.OrdinalIgnoreCase);
    }

    public static string Describe(IEnumerable<JsonElement> messages) =>
        string.Join("\n", messages.Select(m => $"{m.Field("method")} {m.Field("path")} dir {m.Field("direction")} {m.Field("process_name")} {m.Field("type")} {m.Field("statusCode")}"));
}
