using System.IO.Compression;
using System.Text;

namespace Collector.Fuzz;

/// <summary>The hand-made http1 seeds of corpus/http1 (`Collector.Fuzz write-http1-seeds DIR`
/// writes them again): small scripts in ScriptTarget's format, each a conversation that reaches
/// one part of reassembly or output (framing, codings, pipelining, upgrades, gaps, TLS).</summary>
public static class Http1Seeds
{
    private sealed class Script
    {
        private readonly MemoryStream _s = new();
        public Script Client(string text, int slot = 0) => Data(0, slot, Encoding.Latin1.GetBytes(text));
        public Script Server(string text, int slot = 0) => Data(1, slot, Encoding.Latin1.GetBytes(text));
        public Script Client(byte[] b, int slot = 0) => Data(0, slot, b);
        public Script Server(byte[] b, int slot = 0) => Data(1, slot, b);

        public Script Data(int side, int slot, byte[] b, bool tls = false, bool overlap = false)
        {
            _s.WriteByte((byte)(side | (slot << 1) | (tls ? 0x40 : 0) | (overlap ? 0x80 : 0)));
            _s.WriteByte((byte)b.Length);
            _s.WriteByte((byte)(b.Length >> 8));
            _s.Write(b);
            return this;
        }

        public Script Gap(int side, int n, int slot = 0)
        {
            _s.WriteByte((byte)((4 << 3) | side | (slot << 1)));
            _s.WriteByte((byte)n);
            _s.WriteByte((byte)(n >> 8));
            return this;
        }

        public Script Close(int slot = 0) { _s.WriteByte((byte)((5 << 3) | (slot << 1))); return this; }
        public Script Open(int slot = 0, bool tracedIsClient = false, bool unknown = false)
        {
            _s.WriteByte((byte)((6 << 3) | (slot << 1) | (unknown ? 0x40 : 0) | (tracedIsClient ? 0x80 : 0)));
            return this;
        }
        public Script Sweep() { _s.WriteByte(7 << 3); return this; }
        public Script Exit() { _s.WriteByte((7 << 3) | 0x40); return this; }
        public byte[] Bytes => _s.ToArray();
    }

    private static byte[] Cat(params object[] parts) =>
        parts.SelectMany(p => p is string s ? Encoding.Latin1.GetBytes(s) : (byte[])p).ToArray();

    private static byte[] Compress(string coding, string text)
    {
        var m = new MemoryStream();
        using (Stream z = coding switch
        {
            "gzip" => new GZipStream(m, CompressionLevel.Optimal, leaveOpen: true),
            "deflate" => new ZLibStream(m, CompressionLevel.Optimal, leaveOpen: true),
            "rawdeflate" => new DeflateStream(m, CompressionLevel.Optimal, leaveOpen: true),
            _ => new BrotliStream(m, CompressionLevel.Optimal, leaveOpen: true),
        })
            z.Write(Encoding.UTF8.GetBytes(text));
        return m.ToArray();
    }

    public static int Write(string dir)
    {
        Directory.CreateDirectory(dir);
        const string json = "{\"id\":1,\"name\":\"fuzz\",\"tags\":[\"a\",\"b\"],\"text\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}";
        var seeds = new Dictionary<string, byte[]>
        {
            ["get-keepalive"] = new Script()
                .Client("GET /a?x=1 HTTP/1.1\r\nHost: svc\r\nUser-Agent: curl\r\nAuthorization: Bearer t\r\n\r\n")
                .Server("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello")
                .Client("POST /b HTTP/1.1\r\nHost: svc\r\nContent-Type: application/json\r\nContent-Length: 9\r\n\r\n{\"a\":\"b\"}")
                .Server("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                .Close().Bytes,
            ["chunked-gzip-trailer"] = new Script()
                .Client("GET /gz HTTP/1.1\r\nHost: svc\r\nAccept-Encoding: gzip\r\n\r\n")
                .Server(Cat("HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n",
                    Chunked(Compress("gzip", json), 17), "X-T: 1\r\n\r\n"))
                .Close().Bytes,
            ["deflate-br-raw"] = new Script()
                .Client("GET /z HTTP/1.1\r\nHost: svc\r\n\r\n")
                .Server(Cat("HTTP/1.1 200 OK\r\nContent-Encoding: deflate\r\nContent-Length: ", Compress("deflate", json).Length.ToString(), "\r\n\r\n", Compress("deflate", json)))
                .Client("GET /br HTTP/1.1\r\nHost: svc\r\n\r\n")
                .Server(Cat("HTTP/1.1 200 OK\r\nContent-Encoding: br\r\nContent-Length: ", Compress("br", json).Length.ToString(), "\r\n\r\n", Compress("br", json)))
                .Client(Cat("PUT /raw HTTP/1.1\r\nHost: svc\r\nContent-Encoding: deflate\r\nContent-Length: ", Compress("rawdeflate", json).Length.ToString(), "\r\n\r\n", Compress("rawdeflate", json)))
                .Server("HTTP/1.1 204 No Content\r\n\r\n")
                .Close().Bytes,
            ["pipelined-head-304-continue"] = new Script()
                .Client("HEAD / HTTP/1.1\r\nHost: svc\r\n\r\nGET /c HTTP/1.1\r\nHost: svc\r\nIf-None-Match: \"x\"\r\n\r\n")
                .Server("HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\nHTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n")
                .Client("POST /up HTTP/1.1\r\nHost: svc\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
                .Server("HTTP/1.1 100 Continue\r\n\r\n")
                .Client("data")
                .Server("HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok")
                .Close().Bytes,
            ["http10-close-delimited"] = new Script()
                .Client("GET /old HTTP/1.0\r\n\r\n")
                .Server("HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n\r\n<html>body until close</html>")
                .Close().Bytes,
            ["cut-events-gap"] = new Script()
                .Client("GE").Client("T /cut HT").Client("TP/1.1\r\nHo").Client("st: svc\r\n\r").Client("\n")
                .Server("HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n0123456789")
                .Gap(1, 20)
                .Server("0123456789")
                .Client("GET /after HTTP/1.1\r\nHost: svc\r\n\r\n")
                .Server("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc")
                .Bytes,
            ["upgrade-connect"] = new Script()
                .Client("GET /ws HTTP/1.1\r\nHost: svc\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
                .Server("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x05hello")
                .Client("\x81\x85abcd\x01\x02\x03\x04\x05")
                .Client("CONNECT db:5432 HTTP/1.1\r\nHost: db:5432\r\n\r\n", slot: 1)
                .Server("HTTP/1.1 200 Connection Established\r\n\r\n", slot: 1)
                .Client("\x16\x03\x01\x00\x05hello", slot: 1)
                .Close().Close(1).Bytes,
            ["traced-client-tls-overlap"] = new Script()
                .Open(2, tracedIsClient: true)
                .Data(0, 2, Encoding.Latin1.GetBytes("GET /tls HTTP/1.1\r\nHost: api\r\nCookie: s=1\r\n\r\n"), tls: true)
                .Data(1, 2, Encoding.Latin1.GetBytes("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234"), tls: true)
                .Data(1, 2, Encoding.Latin1.GetBytes("3456789"), tls: true, overlap: true)
                .Open(3, unknown: true)
                .Client("ody\r\n\r\nGET /mid HTTP/1.1\r\nHost: x\r\n\r\n", slot: 3)
                .Server("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", slot: 3)
                .Sweep().Bytes,
            ["malformed-smuggle"] = new Script()
                .Client("POST /s HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
                .Server("HTTP/1.1 400 Bad Request\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nbad")
                .Client("GET /folded HTTP/1.1\r\nHost: a\r\nX-Long: a\r\n b\r\n\r\n")
                .Server("HTTP/1.1 200\r\nContent-Length: ffff\r\n\r\n")
                .Exit().Bytes,
        };
        foreach (var (name, bytes) in seeds) File.WriteAllBytes(Path.Combine(dir, name), bytes);
        Console.WriteLine($"{seeds.Count} seeds in {dir}");
        return 0;
    }

    private static byte[] Chunked(byte[] body, int size)
    {
        var m = new MemoryStream();
        for (var at = 0; at < body.Length; at += size)
        {
            var n = Math.Min(size, body.Length - at);
            m.Write(Encoding.ASCII.GetBytes($"{n:x};ext=1\r\n"));
            m.Write(body, at, n);
            m.Write("\r\n"u8);
        }
        m.Write("0\r\n"u8);
        return m.ToArray();
    }
}
