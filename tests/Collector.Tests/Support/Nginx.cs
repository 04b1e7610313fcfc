using System.Diagnostics;
using System.Net.Sockets;

namespace Collector.Tests.Support;

/// <summary>A real nginx on loopback ports chosen by the test, plaintext and TLS (self-signed
/// certificate made for the test), serving files from its own directory and a few fixed routes.</summary>
public sealed class Nginx : IDisposable
{
    private readonly Process _process;
    public string Dir { get; }
    public string Www => Path.Combine(Dir, "www");
    public int PlainPort { get; }
    public int TlsPort { get; }
    public string CertPath => Path.Combine(Dir, "cert.pem");

    public Nginx(string listenAddress = "127.0.0.1", string? extraLocations = null, string? netns = null)
    {
        Dir = Repo.TempDir("nginx");
        Directory.CreateDirectory(Www);
        Tls.MakeSelfSigned(Dir);
        PlainPort = Repo.FreePort();
        TlsPort = Repo.FreePort();
        var listen = listenAddress.Contains(':') ? $"[{listenAddress}]" : listenAddress;
        File.WriteAllText(Path.Combine(Dir, "nginx.conf"), $$"""
            daemon off;
            worker_processes 1;
            pid {{Dir}}/nginx.pid;
            error_log {{Dir}}/error.log;
            events { worker_connections 256; }
            http {
              access_log off;
              # sendfile bypasses user memory: the collector can count those bytes but not see them
              sendfile off;
              client_body_temp_path {{Dir}}/body;
              proxy_temp_path {{Dir}}/proxy;
              fastcgi_temp_path {{Dir}}/fastcgi;
              uwsgi_temp_path {{Dir}}/uwsgi;
              scgi_temp_path {{Dir}}/scgi;
              keepalive_requests 10000;
              server {
                listen {{listen}}:{{PlainPort}};
                listen {{listen}}:{{TlsPort}} ssl;
                ssl_certificate {{Dir}}/cert.pem;
                ssl_certificate_key {{Dir}}/key.pem;
                root {{Www}};
                location = /echo { client_max_body_size 10m; if ($request_method = POST) { return 200 'posted\n'; } }
                location = /json { default_type application/json; return 200 '{"ok":true,"items":[1,2,3]}'; }
                location = /created { return 201 'created\n'; }
                {{extraLocations ?? ""}}
              }
            }
            """);
        var (file, args) = netns is null
            ? ("nginx", $"-c {Dir}/nginx.conf -e {Dir}/error.log")
            : ("ip", $"netns exec {netns} nginx -c {Dir}/nginx.conf -e {Dir}/error.log");
        _process = Process.Start(new ProcessStartInfo(file, args)
        {
            UseShellExecute = false,
            RedirectStandardError = true,
        })!;
        if (netns is null)
        {
            WaitForPort(listenAddress, PlainPort);
            WaitForPort(listenAddress, TlsPort);
        }
        else
        {
            Shell.Check("bash", $"-c \"for i in $(seq 100); do ip netns exec {netns} ss -ltn | grep -q ':{TlsPort} ' && exit 0; sleep 0.05; done; exit 1\"");
        }
    }

    public static void WaitForPort(string host, int port)
    {
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (DateTime.UtcNow < deadline)
        {
            try
            {
                using var c = new TcpClient(host.Contains(':') ? AddressFamily.InterNetworkV6 : AddressFamily.InterNetwork);
                c.Connect(host, port);
                return;
            }
            catch (SocketException) { Thread.Sleep(50); }
        }
        throw new TimeoutException($"nothing listens on {host}:{port}");
    }

    /// <summary>Waits until a socket listens on port, without connecting to it (/proc/net/tcp*).</summary>
    public static void WaitForListen(int port)
    {
        var hex = $":{port:X4} ";
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (DateTime.UtcNow < deadline)
        {
            foreach (var table in new[] { "/proc/net/tcp", "/proc/net/tcp6" })
                foreach (var line in File.ReadLines(table).Skip(1))
                {
                    var cols = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                    if (cols.Length > 3 && (cols[1] + " ").EndsWith(hex) && cols[3] == "0A") return;
                }
            Thread.Sleep(50);
        }
        throw new TimeoutException($"nothing listens on port {port}");
    }

    public void Dispose()
    {
        try { _process.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
        _process.WaitForExit(5000);
        _process.Dispose();
    }
}

public static class Tls
{
    public static void MakeSelfSigned(string dir)
    {
        Shell.Check("openssl",
            $"req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1 " +
            $"-keyout {dir}/key.pem -out {dir}/cert.pem");
    }
}
