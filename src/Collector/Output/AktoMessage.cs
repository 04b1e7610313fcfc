using System.Buffers;
using System.Globalization;
using System.IO.Compression;
using System.Net;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using Collector.Connections;
using Collector.Http;

namespace Collector.Output;

/// <summary>Identity fields that are the same for every message of this collector.</summary>
public sealed record AktoIdentity(string AccountId, string VxlanId, string DaemonsetId, IReadOnlyCollection<string> RedactHeaders);

/// <summary>Writes an exchange as the Akto traffic message (shared/spec/akto-wire-format.md): one
/// flat JSON object whose every value is a string.</summary>
public static class AktoMessage
{
    public const string TruncatedHeader = "x-collector-body-truncated";
    public const string EncodingHeader = "x-collector-body-encoding";
    public const string RedactedValue = "<redacted>";

    private static readonly JsonWriterOptions WriterOptions = new()
    {
        // the processor reads JSON, not HTML: keep '<', '&', '+' … readable and bodies exact
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        SkipValidation = true,
    };

    /// <summary>Body as it leaves the collector: decoded, cut to the cap, with its markers.</summary>
    public readonly record struct PreparedBody(string Text, string? TruncationNote, bool Base64, string? DecodedFrom);

    public static void Write(IBufferWriter<byte> output, HttpExchange x, AktoIdentity id, long unixSeconds, int bodyCap)
    {
        using var w = new Utf8JsonWriter(output, WriterOptions);
        var req = x.Request;
        var resp = x.Response;
        var info = x.Info;
        var client = info is null ? "" : x.Direction == 1 ? Endpoint(info.RemoteAddress, info.RemotePort) : Endpoint(info.LocalAddress, info.LocalPort);
        var server = info is null ? "" : x.Direction == 1 ? Endpoint(info.LocalAddress, info.LocalPort) : Endpoint(info.RemoteAddress, info.RemotePort);

        var reqBody = Prepare(req, bodyCap);
        var respBody = Prepare(resp, bodyCap);

        w.WriteStartObject();
        w.WriteString("method"u8, req.Method);
        w.WriteString("path"u8, req.Target);
        w.WriteString("type"u8, req.Version);
        w.WriteString("statusCode"u8, resp.StatusCode.ToString(CultureInfo.InvariantCulture));
        w.WriteString("status"u8, resp.Reason.Length > 0 ? $"{resp.StatusCode} {resp.Reason}" : resp.StatusCode.ToString(CultureInfo.InvariantCulture));
        w.WriteString("requestHeaders"u8, HeadersJson(req, reqBody, id.RedactHeaders, server));
        w.WriteString("responseHeaders"u8, HeadersJson(resp, respBody, id.RedactHeaders, null));
        w.WriteString("requestPayload"u8, reqBody.Text);
        w.WriteString("responsePayload"u8, respBody.Text);
        w.WriteString("ip"u8, client);
        w.WriteString("destIp"u8, server);
        w.WriteString("time"u8, unixSeconds.ToString(CultureInfo.InvariantCulture));
        w.WriteString("akto_account_id"u8, id.AccountId);
        w.WriteString("akto_vxlan_id"u8, id.VxlanId);
        w.WriteString("is_pending"u8, "false");
        w.WriteString("source"u8, "MIRRORING");
        w.WriteString("direction"u8, x.Direction == 1 ? "1" : "2");
        w.WriteString("process_id"u8, x.Connection.Tgid.ToString(CultureInfo.InvariantCulture));
        w.WriteString("socket_id"u8, x.Connection.Fd.ToString(CultureInfo.InvariantCulture));
        w.WriteString("daemonset_id"u8, id.DaemonsetId);
        w.WriteString("process_name"u8, info?.ProcessName ?? "");
        w.WriteString("enable_graph"u8, "true");
        w.WriteEndObject();
    }

    /// <summary>The collection_details Kafka header: host|method|path, or null when a part is empty.</summary>
    public static string? CollectionDetails(HttpExchange x)
    {
        var host = x.Request.Header("host");
        if (string.IsNullOrEmpty(host) || string.IsNullOrEmpty(x.Request.Method) || string.IsNullOrEmpty(x.Request.Target))
            return null;
        return $"{host}|{x.Request.Method}|{x.Request.Target}";
    }

    public static string Endpoint(IPAddress address, int port) =>
        address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6
            ? $"[{address}]:{port}"
            : $"{address}:{port}";

    private static string HeadersJson(HttpMessage m, PreparedBody body, IReadOnlyCollection<string> redact, string? serverForHost)
    {
        // flat object name → value; repeated headers joined with ", " (first spelling of the name kept)
        var order = new List<string>();
        var values = new Dictionary<string, (string Name, string Value)>(StringComparer.OrdinalIgnoreCase);
        foreach (var (name, value) in m.Headers)
        {
            if (body.DecodedFrom is not null && name.Equals("content-encoding", StringComparison.OrdinalIgnoreCase))
                continue; // the payload is sent decoded: the coding no longer applies
            if (values.TryGetValue(name, out var prev))
                values[name] = (prev.Name, prev.Value + ", " + value);
            else
            {
                values[name] = (name, value);
                order.Add(name);
            }
        }
        if (serverForHost is not null && !values.ContainsKey("host") && serverForHost.Length > 0)
        {
            values["host"] = ("host", serverForHost); // HTTP/1.0 without Host: the address it was sent to
            order.Add("host");
        }
        if (body.TruncationNote is not null) { values[TruncatedHeader] = (TruncatedHeader, body.TruncationNote); order.Add(TruncatedHeader); }
        if (body.Base64) { values[EncodingHeader] = (EncodingHeader, "base64"); order.Add(EncodingHeader); }
        var buffer = new ArrayBufferWriter<byte>(256);
        using (var w = new Utf8JsonWriter(buffer, WriterOptions))
        {
            w.WriteStartObject();
            foreach (var key in order)
            {
                var (name, value) = values[key];
                var redacted = redact.Count > 0 && redact.Contains(name.ToLowerInvariant());
                w.WriteString(name, redacted ? RedactedValue : value);
            }
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(buffer.WrittenSpan);
    }

    /// <summary>Decodes the content-encoding, cuts to the cap and picks a text form: UTF-8 text as
    /// is, anything else base64 (marked). A cut body is marked; a cut JSON body is not sent at all,
    /// since the processor drops samples whose JSON body is cut off.</summary>
    public static PreparedBody Prepare(HttpMessage m, int cap)
    {
        var raw = m.Body;
        string? decodedFrom = null;
        byte[]? decoded = null;
        var decodedLength = 0;
        var truncated = m.BodyTruncated;
        var coding = m.Header("content-encoding")?.Trim().ToLowerInvariant();
        if (!raw.IsEmpty && coding is "gzip" or "x-gzip" or "deflate" or "br" && !m.BodyTruncated && !m.BodyHasGap)
        {
            if (TryDecode(raw, coding, cap, out decoded, out decodedLength, out var cut))
            {
                decodedFrom = coding;
                truncated |= cut;
                raw = decoded!.AsSpan(0, decodedLength);
            }
        }
        try
        {
            if (raw.Length > cap)
            {
                raw = raw[..cap];
                truncated = true;
            }
            string? note = null;
            if (m.BodyHasGap) note = $"gap; kept={raw.Length}";
            else if (truncated || m.Incomplete) note = $"kept={raw.Length}; total={(decodedFrom is null ? m.BodyTotalBytes.ToString(CultureInfo.InvariantCulture) : "unknown")}";
            if (note is not null && IsJson(m))
                return new PreparedBody("", note + "; json body withheld", false, decodedFrom);
            if (raw.IsEmpty) return new PreparedBody("", note, false, decodedFrom);
            if (IsUtf8(raw, note is not null))
                return new PreparedBody(Encoding.UTF8.GetString(raw), note, false, decodedFrom);
            return new PreparedBody(Convert.ToBase64String(raw), note, true, decodedFrom);
        }
        finally
        {
            if (decoded is not null) ArrayPool<byte>.Shared.Return(decoded);
        }
    }

    private static bool IsJson(HttpMessage m) =>
        m.Header("content-type")?.Contains("json", StringComparison.OrdinalIgnoreCase) ?? false;

    /// <summary>Valid UTF-8; a cut body may end inside a multi-byte character, which is allowed.</summary>
    private static bool IsUtf8(ReadOnlySpan<byte> s, bool mayBeCut)
    {
        if (System.Text.Unicode.Utf8.IsValid(s)) return true;
        if (!mayBeCut) return false;
        for (var trim = 1; trim <= 3 && trim < s.Length; trim++)
            if (System.Text.Unicode.Utf8.IsValid(s[..^trim])) return true;
        return false;
    }

    private static bool TryDecode(ReadOnlySpan<byte> body, string coding, int cap, out byte[]? decoded, out int length, out bool cut)
    {
        decoded = ArrayPool<byte>.Shared.Rent(Math.Min(Math.Max(body.Length * 4, 4096), cap + 1));
        length = 0;
        cut = false;
        try
        {
            using var input = new MemoryStream(body.ToArray(), writable: false);
            using Stream stream = coding switch
            {
                "gzip" or "x-gzip" => new GZipStream(input, CompressionMode.Decompress),
                "br" => new BrotliStream(input, CompressionMode.Decompress),
                // "deflate" is zlib-wrapped by the RFC, but raw deflate is common in the field
                _ => body.Length >= 2 && (body[0] & 0x0f) == 8 && ((body[0] << 8) | body[1]) % 31 == 0
                    ? new ZLibStream(input, CompressionMode.Decompress)
                    : new DeflateStream(input, CompressionMode.Decompress),
            };
            while (true)
            {
                if (length == decoded.Length)
                {
                    if (length > cap) { cut = true; break; } // bounded: a decompression bomb stops here
                    var bigger = ArrayPool<byte>.Shared.Rent(Math.Min(decoded.Length * 2, cap + 1));
                    decoded.AsSpan(0, length).CopyTo(bigger);
                    ArrayPool<byte>.Shared.Return(decoded);
                    decoded = bigger;
                    if (length == decoded.Length) { cut = true; break; }
                }
                var n = stream.Read(decoded, length, decoded.Length - length);
                if (n == 0) break;
                length += n;
            }
            if (length > cap) { length = cap; cut = true; }
            return true;
        }
        catch (Exception e) when (e is InvalidDataException or IOException)
        {
            ArrayPool<byte>.Shared.Return(decoded!);
            decoded = null;
            return false;
        }
    }
}
