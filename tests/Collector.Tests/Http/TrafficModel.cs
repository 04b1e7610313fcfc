using System.Text;
using Collector.Events;
using FsCheck;
using FsCheck.Fluent;

namespace Collector.Tests.Http;

public enum Framing { None, Length, Chunked, Close }

public sealed record Field(string Name, string Value)
{
    public override string ToString() => $"{Name}: {Value}";
}

public sealed record RequestSpec(string Method, string Target, string Version, Field[] Fields, byte[] Body, Framing Framing,
    int ChunkSeed, bool Extensions, Field[] Trailers, bool Expect100);

public sealed record ResponseSpec(int Status, string Reason, Field[] Fields, byte[] Body, Framing Framing,
    int ChunkSeed, bool Extensions, Field[] Trailers, int[] Interims, string? DeclaredLength);

public sealed record ExchangeSpec(RequestSpec Request, ResponseSpec Response);

public sealed record ConnSpec(bool TracedIsServer, bool Pipelined, bool SendOpen, ExchangeSpec[] Exchanges, int CutSeed, int MaxCut);

public sealed record Scenario(ConnSpec[] Conns, int InterleaveSeed)
{
    public override string ToString() =>
        $"{Conns.Length} connections, seed {InterleaveSeed}: " + string.Join(" | ", Conns.Select(c =>
            $"{(c.TracedIsServer ? "server" : "client")}{(c.Pipelined ? " pipelined" : "")} cut≤{c.MaxCut}: " +
            string.Join(", ", c.Exchanges.Select(x => $"{x.Request.Method} {x.Request.Target} {x.Request.Framing}/{x.Request.Body.Length} → {x.Response.Status} {x.Response.Framing}/{x.Response.Body.Length}"))));
}

/// <summary>Valid HTTP/1.x traffic: generators (FsCheck) for exchanges, their bytes on the wire,
/// and the kernel events that carry them, cut at arbitrary byte boundaries.</summary>
public static class TrafficModel
{
    private const string TokenChars = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

    private static Gen<string> Token(int min, int max) =>
        Gen.Choose(min, max).SelectMany(n => Gen.ArrayOf(Gen.Elements(TokenChars.ToCharArray()), n)).Select(cs => new string(cs));

    private static Gen<byte[]> Bytes(int max, bool text) =>
        Gen.Zip(Gen.Choose(0, max), Gen.Choose(0, int.MaxValue)).Select(t =>
        {
            var r = new Random(t.Item2);
            if (!text)
            {
                var b = new byte[t.Item1];
                r.NextBytes(b);
                return b;
            }
            const string alphabet = "abcdefghijklmnopqrstuvwxyz0123456789 {}\":,[]\r\n\t\\é日";
            var sb = new StringBuilder();
            while (Encoding.UTF8.GetByteCount(sb.ToString()) < t.Item1) sb.Append(alphabet[r.Next(alphabet.Length)]);
            return Encoding.UTF8.GetBytes(sb.ToString());
        });

    private static readonly Gen<string> FieldValue =
        Gen.Zip(Gen.Choose(0, 40), Gen.Choose(0, int.MaxValue)).Select(t =>
        {
            const string chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 !\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~é";
            var r = new Random(t.Item2);
            var s = new string(Enumerable.Range(0, t.Item1).Select(_ => chars[r.Next(chars.Length)]).ToArray());
            return s.Trim(' '); // fields are trimmed: generate what survives
        });

    // names that change framing or the body's treatment are added by the renderer, never at random
    private static readonly Gen<string> FieldName =
        Gen.OneOf(Gen.Elements("Accept", "User-Agent", "X-Request-Id", "Cookie", "Authorization", "Cache-Control", "X-Forwarded-For", "accept", "x-request-id"),
            Token(1, 20).Select(t => "X-" + t));

    private static Gen<Field[]> Fields(int max) =>
        Gen.Choose(0, max).SelectMany(n => Gen.ArrayOf(Gen.Zip(FieldName, FieldValue).Select(t => new Field(t.Item1, t.Item2)), n));

    private static readonly Gen<string> Method = Gen.Frequency(
        (6, Gen.Elements("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")),
        (1, Gen.Constant("HEAD")),
        (2, Token(1, 12).Where(t => t is not "CONNECT" and not "HEAD" and not "PRI")));

    private static Gen<string> Target(string method) =>
        method == "OPTIONS"
            ? Gen.Elements("*", "/options")
            : Gen.Frequency(
                (8, Gen.Zip(Token(0, 12), Token(0, 20)).Select(t => "/" + t.Item1.Replace("%", "") + (t.Item2.Length > 0 ? "?" + t.Item2 : ""))),
                (1, Token(1, 10).Select(h => $"http://{h.Replace("%", "")}.example:8080/x")));

    private static readonly Gen<RequestSpec> Request =
        from method in Method
        from target in Target(method)
        from version in Gen.Frequency((9, Gen.Constant("HTTP/1.1")), (1, Gen.Constant("HTTP/1.0")))
        from fields in Fields(6)
        from host in FieldValue.Select(v => v.Length == 0 ? "h" : v.Replace(" ", ""))
        from body in Gen.Frequency((2, Gen.Constant(Array.Empty<byte>())), (3, Bytes(3000, text: true)), (1, Bytes(3000, text: false)))
        from chunked in Gen.Frequency((3, Gen.Constant(false)), (1, Gen.Constant(true)))
        from explicitZero in Gen.Elements(true, false)
        from chunkSeed in Gen.Choose(0, int.MaxValue)
        from extensions in Gen.Elements(true, false)
        from trailers in Fields(2)
        from expect in Gen.Frequency((5, Gen.Constant(false)), (1, Gen.Constant(true)))
        select new RequestSpec(method, target, version, [new Field("Host", host), .. fields], body,
            chunked ? Framing.Chunked : body.Length > 0 || explicitZero ? Framing.Length : Framing.None,
            chunkSeed, extensions, chunked ? trailers : [], expect && body.Length > 0 && !chunked);

    private static readonly Gen<ResponseSpec> Response =
        from status in Gen.Frequency((6, Gen.Constant(200)), (4, Gen.Elements(201, 202, 204, 206, 301, 304, 400, 401, 404, 418, 500, 503, 599)))
        from reason in Gen.Frequency((5, Gen.Elements("OK", "Not Found", "Whatever you like", "é")), (1, Gen.Constant("")))
        from fields in Fields(6)
        from body in Gen.Frequency((1, Gen.Constant(Array.Empty<byte>())), (4, Bytes(4000, text: true)), (1, Bytes(4000, text: false)))
        from chunked in Gen.Elements(true, false)
        from close in Gen.Frequency((6, Gen.Constant(false)), (1, Gen.Constant(true)))
        from chunkSeed in Gen.Choose(0, int.MaxValue)
        from extensions in Gen.Elements(true, false)
        from trailers in Fields(2)
        from interims in Gen.Frequency((6, Gen.Constant(Array.Empty<int>())), (1, Gen.ArrayOf(Gen.Elements(100, 102, 103), 1).Select(a => a)))
        select new ResponseSpec(status, reason, fields, status is 204 or 304 ? [] : body,
            status is 204 or 304 ? Framing.None : close ? Framing.Close : chunked ? Framing.Chunked : Framing.Length,
            chunkSeed, extensions, chunked ? trailers : [], interims, null);

    private static readonly Gen<ExchangeSpec> Exchange =
        Gen.Zip(Request, Response).Select(t => t.Item1.Method == "HEAD"
            // a HEAD response declares a length but carries no body
            ? new ExchangeSpec(t.Item1, t.Item2 with { Body = [], Framing = Framing.None, Trailers = [], DeclaredLength = t.Item2.Body.Length.ToString() })
            : new ExchangeSpec(t.Item1, t.Item2));

    private static readonly Gen<ConnSpec> Conn =
        from server in Gen.Elements(true, false)
        from pipelined in Gen.Frequency((3, Gen.Constant(false)), (1, Gen.Constant(true)))
        from open in Gen.Frequency((5, Gen.Constant(true)), (1, Gen.Constant(false)))
        from n in Gen.Choose(1, 5)
        from exchanges in Gen.ArrayOf(Exchange, n)
        from cutSeed in Gen.Choose(0, int.MaxValue)
        from maxCut in Gen.Elements(1, 3, 17, 200, 1500, 16384, 100000)
        select new ConnSpec(server, pipelined, open, Normalize(exchanges, pipelined), cutSeed, maxCut);

    /// <summary>Only the last response may run to the close; a pipelined client does not expect 100.</summary>
    private static ExchangeSpec[] Normalize(ExchangeSpec[] xs, bool pipelined) =>
        xs.Select((x, i) =>
        {
            var resp = x.Response;
            if (resp.Framing == Framing.Close && i != xs.Length - 1) resp = resp with { Framing = Framing.Length };
            if (resp.Framing != Framing.Chunked) resp = resp with { Trailers = [] };
            var req = pipelined ? x.Request with { Expect100 = false } : x.Request;
            if (req.Expect100 && resp.Interims.Length == 0) resp = resp with { Interims = [100] };
            return new ExchangeSpec(req, resp);
        }).ToArray();

    public static readonly Gen<Scenario> Scenarios =
        from n in Gen.Choose(1, 6)
        from conns in Gen.ArrayOf(Conn, n)
        from seed in Gen.Choose(0, int.MaxValue)
        select new Scenario(conns, seed);

    // ---- bytes on the wire ----

    private static byte[] Ascii(string s) => Encoding.UTF8.GetBytes(s);

    private static List<byte[]> Chunks(byte[] body, int seed, bool extensions, Field[] trailers)
    {
        var r = new Random(seed);
        var parts = new List<byte[]>();
        var at = 0;
        while (at < body.Length)
        {
            var n = Math.Min(body.Length - at, r.Next(1, 1200));
            var ext = extensions ? $";ext{r.Next(9)}=\"v;al\"" : "";
            parts.Add(Ascii($"{n:x}{ext}\r\n").Concat(body.AsSpan(at, n).ToArray()).Concat(Ascii("\r\n")).ToArray());
            at += n;
        }
        parts.Add(Ascii("0" + (extensions ? ";end" : "") + "\r\n" + string.Concat(trailers.Select(t => $"{t}\r\n")) + "\r\n"));
        return parts;
    }

    /// <summary>The request's header block and its body bytes (apart: a client expecting 100 waits between them).</summary>
    public static (byte[] Head, byte[] Body) Render(RequestSpec r)
    {
        var head = new StringBuilder($"{r.Method} {r.Target} {r.Version}\r\n");
        foreach (var f in r.Fields) head.Append($"{f}\r\n");
        if (r.Framing == Framing.Length) head.Append($"Content-Length: {r.Body.Length}\r\n");
        if (r.Framing == Framing.Chunked) head.Append("Transfer-Encoding: chunked\r\n");
        if (r.Expect100) head.Append("Expect: 100-continue\r\n");
        head.Append("\r\n");
        var body = r.Framing == Framing.Chunked ? Chunks(r.Body, r.ChunkSeed, r.Extensions, r.Trailers).SelectMany(b => b).ToArray() : r.Body;
        return (Ascii(head.ToString()), body);
    }

    public static byte[] Render(ResponseSpec r, bool includeInterims = true)
    {
        var sb = new List<byte>();
        if (includeInterims)
            foreach (var i in r.Interims) sb.AddRange(Ascii($"HTTP/1.1 {i} Interim\r\nX-Interim: {i}\r\n\r\n"));
        var head = new StringBuilder($"HTTP/1.1 {r.Status}{(r.Reason.Length > 0 ? " " + r.Reason : "")}\r\n");
        foreach (var f in r.Fields) head.Append($"{f}\r\n");
        if (r.DeclaredLength is not null) head.Append($"Content-Length: {r.DeclaredLength}\r\n");
        if (r.Framing == Framing.Length) head.Append($"Content-Length: {r.Body.Length}\r\n");
        if (r.Framing == Framing.Chunked) head.Append("Transfer-Encoding: chunked\r\n");
        head.Append("\r\n");
        sb.AddRange(Ascii(head.ToString()));
        sb.AddRange(r.Framing == Framing.Chunked ? Chunks(r.Body, r.ChunkSeed, r.Extensions, r.Trailers).SelectMany(b => b) : r.Body);
        return sb.ToArray();
    }

    public static Field[] ExpectedRequestFields(RequestSpec r)
    {
        var f = new List<Field>(r.Fields);
        if (r.Framing == Framing.Length) f.Add(new Field("Content-Length", r.Body.Length.ToString()));
        if (r.Framing == Framing.Chunked) f.Add(new Field("Transfer-Encoding", "chunked"));
        if (r.Expect100) f.Add(new Field("Expect", "100-continue"));
        f.AddRange(r.Trailers);
        return f.ToArray();
    }

    public static Field[] ExpectedResponseFields(ResponseSpec r)
    {
        var f = new List<Field>(r.Fields);
        if (r.DeclaredLength is not null) f.Add(new Field("Content-Length", r.DeclaredLength));
        if (r.Framing == Framing.Length) f.Add(new Field("Content-Length", r.Body.Length.ToString()));
        if (r.Framing == Framing.Chunked) f.Add(new Field("Transfer-Encoding", "chunked"));
        f.AddRange(r.Trailers);
        return f.ToArray();
    }

    /// <summary>One connection's bytes in causal order: (direction, bytes) segments, each the bytes one
    /// side sends before it waits for the other.</summary>
    public static List<(StreamDirection Dir, byte[] Bytes)> Segments(ConnSpec c, TestConn conn)
    {
        var segs = new List<(StreamDirection, byte[])>();
        if (c.Pipelined)
        {
            segs.Add((conn.RequestDirection, c.Exchanges.SelectMany(x => { var (h, b) = Render(x.Request); return h.Concat(b); }).ToArray()));
            segs.Add((conn.ResponseDirection, c.Exchanges.SelectMany(x => Render(x.Response)).ToArray()));
            return segs;
        }
        foreach (var x in c.Exchanges)
        {
            var (head, body) = Render(x.Request);
            if (x.Request.Expect100)
            {
                segs.Add((conn.RequestDirection, head));
                var interim = x.Response.Interims.Take(1).SelectMany(i => Ascii($"HTTP/1.1 {i} Interim\r\nX-Interim: {i}\r\n\r\n")).ToArray();
                segs.Add((conn.ResponseDirection, interim));
                segs.Add((conn.RequestDirection, body));
                var rest = x.Response with { Interims = x.Response.Interims.Skip(1).ToArray() };
                segs.Add((conn.ResponseDirection, Render(rest)));
            }
            else
            {
                segs.Add((conn.RequestDirection, head.Concat(body).ToArray()));
                segs.Add((conn.ResponseDirection, Render(x.Response)));
            }
        }
        return segs;
    }

    /// <summary>Cuts segments into events of random sizes up to maxCut.</summary>
    public static List<(StreamDirection Dir, byte[] Bytes)> Events(List<(StreamDirection Dir, byte[] Bytes)> segments, int seed, int maxCut)
    {
        var r = new Random(seed);
        var events = new List<(StreamDirection, byte[])>();
        foreach (var (dir, bytes) in segments)
        {
            var at = 0;
            while (at < bytes.Length)
            {
                var n = Math.Min(bytes.Length - at, r.Next(1, maxCut + 1));
                events.Add((dir, bytes.AsSpan(at, n).ToArray()));
                at += n;
            }
        }
        return events;
    }

    public static Arbitrary<Scenario> Arbitrary => Scenarios.ToArbitrary();
}
