using System.IO.Compression;
using System.Text;
using Collector.Connections;
using Collector.Events;

namespace Collector.Bench;

/// <summary>One kernel data event, as the ring buffer reader would hand it over.</summary>
public readonly record struct SyntheticEvent(StreamDirection Direction, byte[] Payload);

/// <summary>The events of one request/response exchange as one side of a connection sees them.</summary>
public sealed record ExchangeTemplate(string Name, SyntheticEvent[] Events, int BodyBytes);

/// <summary>Builds realistic byte streams: requests and responses split into events the way the
/// kernel sees them (a writev of headers and body is two events; each chunk of a chunked response
/// is its own write).</summary>
public static class Traffic
{
    public static byte[] Text(int size, int seed)
    {
        // JSON-looking text that compresses like real API payloads (about 4-6x with gzip)
        var sb = new StringBuilder(size + 64);
        sb.Append("{\"items\":[");
        var r = new Random(seed);
        while (sb.Length < size - 40)
            sb.Append("{\"id\":").Append(r.Next(100000)).Append(",\"name\":\"item-").Append(r.Next(1000))
              .Append("\",\"price\":").Append(r.Next(10000) / 100.0).Append("},");
        sb.Length--;
        sb.Append("]}");
        while (sb.Length < size) sb.Insert(sb.Length - 2, ' ');
        return Encoding.ASCII.GetBytes(sb.ToString()[..size]);
    }

    /// <summary>JSON of customer records that carry what a sensitive-data policy looks for: an
    /// email, a phone, a card number under "card", an SSN under "ssn", among ids and amounts.</summary>
    public static byte[] PiiText(int size, int seed)
    {
        var sb = new StringBuilder(size + 256);
        sb.Append("{\"customers\":[");
        var r = new Random(seed);
        string[] cards = ["4111111111111111", "5500005555555559", "378282246310005", "6011111111111117"];
        while (sb.Length < size - 260)
            sb.Append("{\"id\":").Append(r.Next(100000)).Append(",\"name\":\"customer-").Append(r.Next(1000))
              .Append("\",\"email\":\"user").Append(r.Next(1000)).Append("@example.com\",\"phone\":\"+1 415-555-")
              .Append(r.Next(2000, 9999)).Append("\",\"card\":\"").Append(cards[r.Next(cards.Length)])
              .Append("\",\"ssn\":\"536-90-").Append(r.Next(1000, 9999)).Append("\",\"balance\":").Append(r.Next(100000) / 100.0).Append("},");
        sb.Length--;
        sb.Append("]}");
        while (sb.Length < size) sb.Insert(sb.Length - 2, ' ');
        return Encoding.ASCII.GetBytes(sb.ToString()[..size]);
    }

    /// <summary>GET answered with a JSON body of customer records (PiiText).</summary>
    public static ExchangeTemplate Pii(int bodySize, int variant, StreamDirection requestDirection)
    {
        var body = PiiText(bodySize, variant);
        var req = B(RequestHead("GET", $"/api/v1/customers/{variant}?page=2&size=50", ""));
        var head = B(ResponseHead($"Content-Length: {body.Length}\r\n"));
        var resp = Opposite(requestDirection);
        return new($"pii-{bodySize}", [new(requestDirection, req), new(resp, head), new(resp, body)], bodySize);
    }

    public static byte[] Gzip(byte[] data)
    {
        using var ms = new MemoryStream();
        using (var gz = new GZipStream(ms, CompressionLevel.Fastest)) gz.Write(data);
        return ms.ToArray();
    }

    private static byte[] B(string s) => Encoding.ASCII.GetBytes(s);

    private static string RequestHead(string method, string path, string extra) =>
        $"{method} {path} HTTP/1.1\r\nHost: api.example.internal:8080\r\nUser-Agent: bench/1.0\r\nAccept: application/json\r\n" +
        $"Accept-Encoding: gzip, deflate, br\r\nX-Request-Id: 5f0c4a8e-{path.Length:x4}-4b1e-9f0d-2c7a5e6b8d10\r\n{extra}\r\n";

    private static string ResponseHead(string extra) =>
        "HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Tue, 25 Nov 2025 10:00:00 GMT\r\nContent-Type: application/json\r\n" +
        $"Connection: keep-alive\r\nCache-Control: no-store\r\n{extra}\r\n";

    /// <summary>GET, response with a Content-Length body, headers and body in two events (writev).</summary>
    public static ExchangeTemplate Plain(int bodySize, int variant, StreamDirection requestDirection)
    {
        var body = Text(bodySize, variant);
        var req = B(RequestHead("GET", $"/api/v1/items/{variant}?page=2&size=50", ""));
        var head = B(ResponseHead($"Content-Length: {body.Length}\r\n"));
        var resp = Opposite(requestDirection);
        return new($"plain-{bodySize}", [new(requestDirection, req), new(resp, head), new(resp, body)], bodySize);
    }

    /// <summary>POST of a JSON body (one event) answered with a Content-Length body.</summary>
    public static ExchangeTemplate Post(int requestBody, int responseBody, int variant, StreamDirection requestDirection)
    {
        var rb = Text(requestBody, variant + 1000);
        var req = B(RequestHead("POST", $"/api/v1/orders/{variant}", $"Content-Type: application/json\r\nContent-Length: {rb.Length}\r\n"))
            .Concat(rb).ToArray();
        var body = Text(responseBody, variant);
        var resp = Opposite(requestDirection);
        return new($"post-{requestBody}/{responseBody}",
            [new(requestDirection, req), new(resp, B(ResponseHead($"Content-Length: {body.Length}\r\n"))), new(resp, body)],
            requestBody + responseBody);
    }

    /// <summary>Chunked response: headers, then one event per chunk, then the last chunk.</summary>
    public static ExchangeTemplate Chunked(int bodySize, int chunkSize, int variant, StreamDirection requestDirection)
    {
        var body = Text(bodySize, variant);
        var req = B(RequestHead("GET", $"/api/v1/stream/{variant}", ""));
        var resp = Opposite(requestDirection);
        var events = new List<SyntheticEvent> { new(requestDirection, req), new(resp, B(ResponseHead("Transfer-Encoding: chunked\r\n"))) };
        for (var off = 0; off < body.Length; off += chunkSize)
        {
            var n = Math.Min(chunkSize, body.Length - off);
            events.Add(new(resp, B($"{n:x}\r\n").Concat(body.AsSpan(off, n).ToArray()).Concat(B("\r\n")).ToArray()));
        }
        events.Add(new(resp, B("0\r\n\r\n")));
        return new($"chunked-{bodySize}", events.ToArray(), bodySize);
    }

    /// <summary>gzip-encoded response (the collector decodes it).</summary>
    public static ExchangeTemplate Gzipped(int bodySize, int variant, StreamDirection requestDirection)
    {
        var body = Gzip(Text(bodySize, variant));
        var req = B(RequestHead("GET", $"/api/v1/report/{variant}", ""));
        var resp = Opposite(requestDirection);
        return new($"gzip-{bodySize}",
            [new(requestDirection, req), new(resp, B(ResponseHead($"Content-Encoding: gzip\r\nContent-Length: {body.Length}\r\n"))), new(resp, body)],
            bodySize);
    }

    public static StreamDirection Opposite(StreamDirection d) =>
        d == StreamDirection.Ingress ? StreamDirection.Egress : StreamDirection.Ingress;
}
