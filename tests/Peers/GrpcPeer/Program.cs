// The collector's gRPC test peer: `server --port 0 [--tls cert.pem key.pem]` prints "port N" and
// serves until killed; `client --url URL [--tag T] SCENARIO` runs one scenario (or "all") on one
// channel, checks every answer, prints "ok SCENARIO" per scenario then "done", and exits 0.
// What each side sends is fixed here (see Expect) so that the tests can check it field by field.
using System.Net;
using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using GrpcPeer;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;

return args.Length > 0 && args[0] == "server" ? await Server.RunAsync(args[1..])
    : args.Length > 0 && args[0] == "client" ? await Client.RunAsync(args[1..])
    : Usage();

static int Usage()
{
    Console.Error.WriteLine("usage: GrpcPeer server --port N [--tls cert.pem key.pem]\n" +
        "       GrpcPeer client --url URL [--tag T] unary|server-stream|client-stream|bidi|gzip|large|all");
    return 2;
}

/// <summary>What the server answers, shared by the server and the client's checks.</summary>
public static class Expect
{
    public const int StreamCount = 5;

    public static Msg UnaryReply(Msg req) => new() { Text = req.Text + "/reply", N = req.N + 1000, Data = Reverse(req.Data) };
    public static Msg ServerStreamItem(Msg req, int i) => new() { Text = $"{req.Text}/{i}", N = i };
    public static Msg ClientStreamReply(IReadOnlyList<Msg> reqs) => new() { Text = reqs[0].Text + "/done", N = reqs.Count };
    public static Msg BidiReply(Msg req) => new() { Text = req.Text + "/echo", N = req.N + 100 };

    public static ByteString Reverse(ByteString b)
    {
        var a = b.ToByteArray();
        Array.Reverse(a);
        return ByteString.CopyFrom(a);
    }

    /// <summary>100 KiB of a pattern: larger than HTTP/2's default 16 KiB frame.</summary>
    public static byte[] Large() => Enumerable.Range(0, 100 * 1024).Select(i => (byte)(i * 7 % 251)).ToArray();

    /// <summary>4 KiB of text, which gzip shrinks a lot.</summary>
    public static byte[] Compressible() => Encoding.ASCII.GetBytes(string.Concat(Enumerable.Repeat("gzip me ", 512)));
}

public sealed class PeerService : Peer.PeerBase
{
    public override async Task<Msg> Unary(Msg request, ServerCallContext context)
    {
        // the client asks for a gzip-compressed answer: compression of this call's messages
        if (context.RequestHeaders.GetValue("x-peer-gzip") is not null)
        {
            var encoding = context.GetHttpContext().Request.Headers["grpc-encoding"].ToString();
            if (encoding != "gzip") throw new RpcException(new Status(StatusCode.InvalidArgument, "the request's grpc-encoding is " + encoding));
            await context.WriteResponseHeadersAsync(new Metadata { { "grpc-internal-encoding-request", "gzip" } });
        }
        return Expect.UnaryReply(request);
    }

    public override async Task ServerStream(Msg request, IServerStreamWriter<Msg> responseStream, ServerCallContext context)
    {
        for (var i = 0; i < request.N; i++)
            await responseStream.WriteAsync(Expect.ServerStreamItem(request, i));
    }

    public override async Task<Msg> ClientStream(IAsyncStreamReader<Msg> requestStream, ServerCallContext context)
    {
        var all = new List<Msg>();
        await foreach (var m in requestStream.ReadAllAsync()) all.Add(m);
        if (all.Count == 0) throw new RpcException(new Status(StatusCode.InvalidArgument, "no messages"));
        return Expect.ClientStreamReply(all);
    }

    public override async Task Bidi(IAsyncStreamReader<Msg> requestStream, IServerStreamWriter<Msg> responseStream, ServerCallContext context)
    {
        await foreach (var m in requestStream.ReadAllAsync())
            await responseStream.WriteAsync(Expect.BidiReply(m));
    }
}

public static class Server
{
    public static async Task<int> RunAsync(string[] args)
    {
        var port = 0;
        string? cert = null, key = null;
        for (var i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--port": port = int.Parse(args[++i]); break;
                case "--tls": cert = args[++i]; key = args[++i]; break;
                default: Console.Error.WriteLine("unknown argument " + args[i]); return 2;
            }
        }
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.Logging.AddConsole(o => o.LogToStandardErrorThreshold = LogLevel.Trace);
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        builder.Services.AddGrpc();
        builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, port, l =>
        {
            l.Protocols = HttpProtocols.Http2; // h2c (prior knowledge) on plain, ALPN h2 with TLS
            if (cert is not null) l.UseHttps(X509Certificate2.CreateFromPemFile(cert, key));
        }));
        var app = builder.Build();
        app.MapGrpcService<PeerService>();
        await app.StartAsync();
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.Single();
        Console.WriteLine("port " + new Uri(address).Port);
        Console.Out.Flush();
        await app.WaitForShutdownAsync();
        return 0;
    }
}

public static class Client
{
    public static readonly string[] Scenarios = ["unary", "server-stream", "client-stream", "bidi", "gzip", "large"];

    public static async Task<int> RunAsync(string[] args)
    {
        string? url = null, scenario = null;
        var tag = "t";
        for (var i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--url": url = args[++i]; break;
                case "--tag": tag = args[++i]; break;
                default: scenario = args[i]; break;
            }
        }
        if (url is null || scenario is null) { Console.Error.WriteLine("client needs --url and a scenario"); return 2; }
        var handler = new EncodingRecorder(new SocketsHttpHandler
        {
            SslOptions = new SslClientAuthenticationOptions { RemoteCertificateValidationCallback = delegate { return true; } },
        });
        using var channel = GrpcChannel.ForAddress(url, new GrpcChannelOptions { HttpHandler = handler, MaxReceiveMessageSize = 16 << 20 });
        var client = new Peer.PeerClient(channel);
        foreach (var s in scenario == "all" ? Scenarios : [scenario])
        {
            try
            {
                await RunScenarioAsync(client, s, tag);
            }
            catch (Exception e)
            {
                Console.Error.WriteLine($"scenario {s} failed: {e}");
                return 1;
            }
            Console.WriteLine("ok " + s);
        }
        Console.WriteLine("done");
        return 0;
    }

    private static void Check(Msg expected, Msg got, string what)
    {
        if (!expected.Equals(got)) throw new InvalidOperationException($"{what}: expected {expected}, got {got}");
    }

    private static async Task RunScenarioAsync(Peer.PeerClient client, string scenario, string tag)
    {
        switch (scenario)
        {
            case "unary":
            {
                var req = new Msg { Text = $"unary-{tag}", N = 1, Data = ByteString.CopyFrom(Enumerable.Range(0, 16).Select(i => (byte)i).ToArray()) };
                Check(Expect.UnaryReply(req), await client.UnaryAsync(req), "unary");
                break;
            }
            case "server-stream":
            {
                var req = new Msg { Text = $"ss-{tag}", N = Expect.StreamCount };
                using var call = client.ServerStream(req);
                var i = 0;
                await foreach (var m in call.ResponseStream.ReadAllAsync()) Check(Expect.ServerStreamItem(req, i++), m, "server-stream " + i);
                if (i != Expect.StreamCount) throw new InvalidOperationException($"server-stream: {i} messages");
                break;
            }
            case "client-stream":
            {
                using var call = client.ClientStream();
                var sent = new List<Msg>();
                for (var i = 0; i < Expect.StreamCount; i++)
                {
                    var m = new Msg { Text = $"cs-{tag}/{i}", N = i };
                    sent.Add(m);
                    await call.RequestStream.WriteAsync(m);
                }
                await call.RequestStream.CompleteAsync();
                Check(Expect.ClientStreamReply(sent), await call, "client-stream");
                break;
            }
            case "bidi":
            {
                // one message each way at a time: request i, then its answer
                using var call = client.Bidi();
                for (var i = 0; i < Expect.StreamCount; i++)
                {
                    var m = new Msg { Text = $"bidi-{tag}/{i}", N = i };
                    await call.RequestStream.WriteAsync(m);
                    if (!await call.ResponseStream.MoveNext(CancellationToken.None)) throw new InvalidOperationException("bidi ended early");
                    Check(Expect.BidiReply(m), call.ResponseStream.Current, "bidi " + i);
                }
                await call.RequestStream.CompleteAsync();
                if (await call.ResponseStream.MoveNext(CancellationToken.None)) throw new InvalidOperationException("bidi: an extra answer");
                break;
            }
            case "gzip":
            {
                // the request compressed by the client, the answer by the server (both grpc-encoding: gzip)
                var req = new Msg { Text = $"gzip-{tag}", N = 7, Data = ByteString.CopyFrom(Expect.Compressible()) };
                var headers = new Metadata { { "grpc-internal-encoding-request", "gzip" }, { "x-peer-gzip", "1" } };
                using var call = client.UnaryAsync(req, headers);
                Check(Expect.UnaryReply(req), await call.ResponseAsync, "gzip");
                var encoding = EncodingRecorder.Last;
                if (encoding != "gzip") throw new InvalidOperationException("gzip: the answer's grpc-encoding is " + encoding);
                break;
            }
            case "large":
            {
                var req = new Msg { Text = $"large-{tag}", N = 100, Data = ByteString.CopyFrom(Expect.Large()) };
                Check(Expect.UnaryReply(req), await client.UnaryAsync(req), "large");
                break;
            }
            default:
                throw new ArgumentException("unknown scenario " + scenario);
        }
    }
}

/// <summary>Keeps the last response's grpc-encoding header (the client's metadata leaves it out).</summary>
public sealed class EncodingRecorder(HttpMessageHandler inner) : DelegatingHandler(inner)
{
    public static string? Last { get; private set; }

    protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        var response = await base.SendAsync(request, cancellationToken);
        Last = response.Headers.TryGetValues("grpc-encoding", out var v) ? string.Join(",", v) : null;
        return response;
    }
}
