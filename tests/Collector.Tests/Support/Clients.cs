using System.Diagnostics;

namespace Collector.Tests.Support;

/// <summary>Real HTTP clients, each with its own TLS stack: curl (libssl), python3 urllib (libssl,
/// the _ex calls), node (OpenSSL linked into the binary), wget (GnuTLS), .NET HttpClient (libssl
/// through System.Security.Cryptography.Native, run in this test process).</summary>
public static class Clients
{
    public const string Python = "/usr/bin/python3"; // Debian's: comm "python3", libssl.so.3

    public static readonly string[] Names = ["curl", "python3", "node", "wget", "dotnet"];

    /// <summary>Process names to put in TRACE_COMMS for these clients and the servers used.</summary>
    public const string TraceComms = "curl,python3,node,wget,nginx,openssl";

    public static async Task<string> GetAsync(string client, string url)
    {
        switch (client)
        {
            case "curl":
                return Shell.Check("curl", $"-sk --fail {url}");
            case "python3":
                return Shell.Check(Python, "-c \"import sys,ssl,urllib.request; " +
                    "sys.stdout.write(urllib.request.urlopen(sys.argv[1], context=ssl._create_unverified_context()).read().decode())\" " + url);
            case "node":
                return Shell.Check("node", "-e \"const u=new URL(process.argv[1]);const m=u.protocol==='https:'?require('https'):require('http');" +
                    "m.get(u,{rejectUnauthorized:false},r=>{let b='';r.setEncoding('utf8');r.on('data',d=>b+=d);r.on('end',()=>process.stdout.write(b))})" +
                    ".on('error',e=>{console.error(e);process.exit(1)})\" " + url);
            case "wget":
                return Shell.Check("wget", $"-qO- --no-check-certificate {url}");
            case "dotnet":
                using (var handler = new HttpClientHandler { ServerCertificateCustomValidationCallback = (_, _, _, _) => true })
                using (var http = new HttpClient(handler))
                    return await http.GetStringAsync(url);
            default:
                throw new ArgumentException(client);
        }
    }

    /// <summary>The process name the collector reports for a client.</summary>
    public static string ProcessName(string client) =>
        client == "dotnet" ? File.ReadAllText($"/proc/{Environment.ProcessId}/comm").Trim() : client;
}
