using System.Buffers;
using System.Buffers.Text;
using System.IO.Compression;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using System.Text;
using Collector.Connections;
using Collector.Http;
using Collector.Metrics;

namespace Collector.Output;

/// <summary>Identity fields that are the same for every message of this collector.</summary>
public sealed record AktoIdentity(string AccountId, string VxlanId, string DaemonsetId, IReadOnlyCollection<string> RedactHeaders);

/// <summary>Writes an exchange as the Akto traffic message (shared/spec/akto-wire-format.md): one
/// flat JSON object whose every value is a string.
///
/// Bodies, as the processor receives them:
/// - Content-Encoding gzip, x-gzip, deflate (zlib-wrapped or raw) and br are decoded here; the
///   content-encoding field is then left out of the headers and `x-collector-decoded: &lt;coding&gt;`
///   says what was undone. A body that does not decode is sent as it came, header kept.
/// - A body that is valid UTF-8 is sent as text. Any other body (images, protobuf, Latin-1 text …)
///   is sent in base64 and its headers carry `x-collector-body-encoding: base64`: JSON strings
///   cannot carry arbitrary bytes, and base64 is lossless and the processor already stores payloads
///   as strings.
/// - A body that is not whole is marked with `x-collector-body-truncated: &lt;reasons&gt;; kept=N; wire=M`
///   (reasons: cap — longer than HTTP_MAX_BODY_BYTES or the Kafka message limit; gap — bytes missing
///   in the capture, only the bytes before the hole are kept; incomplete — the connection ended or
///   was forgotten first; kept: payload bytes sent, wire: body bytes on the wire). A JSON body
///   that is not whole is withheld (empty payload, "; json body withheld" in the marker): the
///   processor drops samples whose JSON body is cut off.
///
/// Headers: a flat object name → value, names as sent (first spelling), repeated fields joined with
/// ", " in order; values that are not UTF-8 are read as ISO-8859-1. A request without a Host field
/// gets one from its absolute-form target, its CONNECT authority, or the server address.
///
/// The output is a line of single-purpose steps, each testable alone: ContentDecoder (decode the
/// content once), the header edits (redaction), SensitiveClassifier when a policy is on (classify
/// and mask), BodyPlan (the body policy above), AktoWriter (field order and JSON escaping, into
/// the caller's buffer: no strings are made for bodies or fields).</summary>
public static class AktoMessage
{
    public const string TruncatedHeader = "x-collector-body-truncated";
    public const string EncodingHeader = "x-collector-body-encoding";
    public const string DecodedHeader = "x-collector-decoded";
    public const string RedactedValue = "<redacted>";

    public const string SensitiveHeader = "x-collector-sensitive";

    [ThreadStatic] private static AktoWriter? t_writer;
    [ThreadStatic] private static MessageParts? t_parts;

    /// <summary>Writes the message, every step in turn: decode the content, edit the headers,
    /// apply the body policy, write. bodyCap: payload bytes kept per body (the output cuts harder
    /// than HTTP_MAX_BODY_BYTES when a message would pass the Kafka limit). Decoding is counted in
    /// the metrics of the table that made the exchange.</summary>
    public static void Write(MessageBuffer output, HttpExchange x, AktoIdentity id, long unixSeconds, int bodyCap)
    {
        var parts = t_parts ??= new MessageParts();
        Decode(x, bodyCap);
        Prepare(parts, x, id);
        Write(output, x, id, unixSeconds, bodyCap, parts);
    }

    /// <summary>Step 0: asks for the cache lines of what the steps read that is likely out of the
    /// cache, without waiting for them. The request was parsed before its response, and on a busy
    /// node other connections' bytes came between: its head and body, and the connection's
    /// message tail, were written long before; the response's bytes came last.</summary>
    public static void Prefetch(HttpExchange x)
    {
        var request = x.Request;
        if (request.HeaderCount > 0) Prefetch(request.FieldBytes(request.HeaderCount, out _));
        Prefetch(request.Body);
        if (x.Info?.AktoTail is { } tail) Prefetch(tail);
    }

    private static unsafe void Prefetch(ReadOnlySpan<byte> s)
    {
        if (!Sse.IsSupported || s.IsEmpty) return;
        fixed (byte* p = s)
            for (var i = 0; i < Math.Min(s.Length, 4096); i += 64)
                Sse.Prefetch0(p + i);
    }

    /// <summary>Step 1: both bodies decoded (once, whatever the later cap).</summary>
    public static void Decode(HttpExchange x, int bodyCap)
    {
        ContentDecoder.Decode(x.Request, bodyCap, x.Metrics);
        ContentDecoder.Decode(x.Response, bodyCap, x.Metrics);
    }

    /// <summary>Step 2: parts reset for x, with the header edits that hold whatever the cap:
    /// redacted fields, and content-encoding left out of a decoded message. Classification and
    /// masking (SensitiveClassifier) add theirs after this.</summary>
    public static void Prepare(MessageParts parts, HttpExchange x, AktoIdentity id)
    {
        parts.Reset(x);
        EditHeaders(parts.Request, id.RedactHeaders);
        EditHeaders(parts.Response, id.RedactHeaders);
    }

    /// <summary>Steps 3 and 4: the body policy at this cap (what is sent, and the fields that
    /// mark it), then the writer.</summary>
    public static void Write(MessageBuffer output, HttpExchange x, AktoIdentity id, long unixSeconds, int bodyCap, MessageParts parts)
    {
        var info = x.Info;
        // inbound (1): the traced process is the server, its local end is the server's
        var server = info is null ? "" : x.Direction == 1 ? info.LocalEndpoint : info.RemoteEndpoint;
        ApplyBodyPolicy(parts.Request, bodyCap, server);
        ApplyBodyPolicy(parts.Response, bodyCap, null);
        (t_writer ??= new AktoWriter()).Write(output, x, id, unixSeconds, parts);
    }

    private static readonly byte[] RedactedBytes = Encoding.UTF8.GetBytes(RedactedValue);

    private static void EditHeaders(SideParts side, IReadOnlyCollection<string> redact)
    {
        var m = side.Message;
        if (redact.Count > 0)
        {
            for (var i = 0; i < m.HeaderCount; i++)
            {
                // the first field of a redacted name stands for all of them (the writer joins the rest into it)
                if (!IsRedacted(m.HeaderName(i), redact) || HasEarlierSameName(m, i)) continue;
                side.Edits.Add(new HeaderEdit(i, RedactedBytes, WholeField: true));
            }
        }
        if (m.DecodedFrom is not null)
        {
            // the payload is sent decoded: the coding no longer applies
            for (var i = m.FindHeader("content-encoding"u8); i >= 0; i = m.FindHeader("content-encoding"u8, i + 1))
                side.Edits.Insert(0, new HeaderEdit(i, null!, WholeField: true));
        }
    }

    private static bool HasEarlierSameName(HttpMessage m, int i)
    {
        for (var j = 0; j < i; j++)
            if (HttpText.EqualsIgnoreCase(m.HeaderName(j), m.HeaderName(i))) return true;
        return false;
    }

    private static bool IsRedacted(ReadOnlySpan<byte> name, IReadOnlyCollection<string> redact)
    {
        foreach (var r in redact)
            if (HttpText.EqualsIgnoreCase(name, r)) return true;
        return false;
    }

    /// <summary>The plan of the side's body at this cap, and the fields added to its headers, in
    /// their order: a Host the request did not send, x-collector-decoded, x-collector-body-truncated,
    /// x-collector-body-encoding, x-collector-sensitive.</summary>
    private static void ApplyBodyPolicy(SideParts side, int bodyCap, string? serverForHost)
    {
        var m = side.Message;
        side.Plan = BodyPlan.Of(m, side.Body, bodyCap);
        side.Added.Clear();
        if (serverForHost is not null && m.FindHeader("host"u8) < 0)
        {
            var host = HostFallback(m, serverForHost);
            if (host.Length > 0) side.Added.Add(("host", host));
        }
        if (m.DecodedFrom is not null) side.Added.Add((DecodedHeader, m.DecodedFrom));
        if (side.Plan.Cut) side.Added.Add((TruncatedHeader, side.Plan.TruncationNote(m)));
        if (side.Plan.Base64) side.Added.Add((EncodingHeader, "base64"));
        if (side.SensitiveNote is not null) side.Added.Add((SensitiveHeader, side.SensitiveNote));
    }

    /// <summary>Host of a request that sent none: its absolute-form authority, its CONNECT
    /// target, or the address it was sent to (HTTP/1.0).</summary>
    private static string HostFallback(HttpMessage m, string server)
    {
        if (!m.IsRequest) return "";
        var target = m.Target;
        var scheme = target.IndexOf("://", StringComparison.Ordinal);
        if (scheme > 0)
        {
            var start = scheme + 3;
            var end = target.IndexOfAny(['/', '?', '#'], start);
            return end < 0 ? target[start..] : target[start..end];
        }
        if (m.Method == "CONNECT") return target;
        return server;
    }

    /// <summary>Writes the collection_details Kafka header, host|method|path in UTF-8, into o; false,
    /// with nothing written, when a part is empty. Bytes, not a string: it is made for every
    /// exchange, and the record header takes bytes.</summary>
    public static bool CollectionDetails(HttpExchange x, MessageBuffer o)
    {
        var req = x.Request;
        var host = req.Header("host");
        var target = req.TargetBytes;
        if (string.IsNullOrEmpty(host) || string.IsNullOrEmpty(req.Method) || (target.IsEmpty && string.IsNullOrEmpty(req.Target)))
            return false;
        Utf8(o, host);
        o.Write("|"u8);
        Utf8(o, req.Method);
        o.Write("|"u8);
        // the target as the string Target would spell it: its bytes when they are UTF-8 (Latin-1 otherwise)
        if (!target.IsEmpty && System.Text.Unicode.Utf8.IsValid(target)) o.Write(target);
        else Utf8(o, req.Target);
        return true;
    }

    private static void Utf8(MessageBuffer o, string s) =>
        o.Advance(Encoding.UTF8.GetBytes(s, o.GetSpan(Encoding.UTF8.GetMaxByteCount(s.Length))));

    public static string Endpoint(System.Net.IPAddress address, int port) => ConnectionInfo.Endpoint(address, port);

    /// <summary>The copy-without-escaping check alone (its tests).</summary>
    internal static bool IsPlainForTests(ReadOnlySpan<byte> s) => JsonText.IsPlain(s);

    /// <summary>JSON string escaping alone (the bench and its tests).</summary>
    internal static void EscapeForBench(MessageBuffer o, ReadOnlySpan<byte> s, bool nested = false) => JsonText.Escaped(o, s, nested);

}
