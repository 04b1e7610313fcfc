using System.Buffers;
using System.Buffers.Text;
using System.IO.Compression;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
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
/// The writer escapes JSON itself (vectorized search for the bytes that need it) into the caller's
/// buffer: no strings are made for bodies or fields.</summary>
public static class AktoMessage
{
    public const string TruncatedHeader = "x-collector-body-truncated";
    public const string EncodingHeader = "x-collector-body-encoding";
    public const string DecodedHeader = "x-collector-decoded";
    public const string RedactedValue = "<redacted>";

    [ThreadStatic] private static Encoder? t_encoder;

    /// <summary>Writes the message. bodyCap: payload bytes kept per body (the output cuts harder
    /// than HTTP_MAX_BODY_BYTES when a message would pass the Kafka limit). Decoding is counted in
    /// the metrics of the table that made the exchange.</summary>
    public static void Write(MessageBuffer output, HttpExchange x, AktoIdentity id, long unixSeconds, int bodyCap)
    {
        var e = t_encoder ??= new Encoder();
        Decode(x.Request, bodyCap, x.Metrics);
        Decode(x.Response, bodyCap, x.Metrics);
        e.Write(output, x, id, unixSeconds, bodyCap);
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

    // ---- content-coding ----

    /// <summary>Decodes a gzip / deflate / br body once (in place), to at most limit bytes. A cut
    /// body (cap, gap, incomplete) decodes as far as its bytes go.</summary>
    public static void Decode(HttpMessage m, int limit, CollectorMetrics? metrics)
    {
        if (m.DecodeAttempted || m.BodyLength == 0) return;
        m.DecodeAttempted = true;
        var i = m.FindHeader("content-encoding"u8);
        if (i < 0 || m.FindHeader("content-encoding"u8, i + 1) >= 0) return; // none, or several codings: sent as is
        var value = HttpText.Trim(m.HeaderValue(i));
        string coding;
        if (HttpText.EqualsLower(value, "gzip"u8) || HttpText.EqualsLower(value, "x-gzip"u8)) coding = "gzip";
        else if (HttpText.EqualsLower(value, "deflate"u8)) coding = "deflate";
        else if (HttpText.EqualsLower(value, "br"u8)) coding = "br";
        else return; // identity, compress, zstd, lists of codings: left as they are (header kept)
        var body = m.BodyArray!;
        var length = m.BodyLength;
        var cut = m.BodyTruncated || m.BodyHasGap || m.Incomplete;
        var output = BufferPool.Rent(Math.Min(Math.Max(length * 4, 4096), limit + 1));
        var written = 0;
        var overflow = false;
        try
        {
            if (coding == "br")
            {
                using var decoder = new BrotliDecoder();
                var src = body.AsSpan(0, length);
                while (true)
                {
                    var status = decoder.Decompress(src, output.AsSpan(written), out var used, out var n);
                    src = src[used..];
                    written += n;
                    if (status == OperationStatus.DestinationTooSmall)
                    {
                        if (written > limit) { overflow = true; break; }
                        Grow(ref output, written, limit);
                        continue;
                    }
                    if (status == OperationStatus.InvalidData || (status == OperationStatus.NeedMoreData && !cut))
                        throw new InvalidDataException("brotli stream is invalid or ends early");
                    break; // Done, or a cut body whose end is missing
                }
            }
            else
            {
                using var input = new MemoryStream(body, 0, length, writable: false);
                using Stream stream = coding == "gzip" ? new GZipStream(input, CompressionMode.Decompress)
                    // RFC 9110 says zlib-wrapped; raw deflate is common in the field: tell them apart by the zlib header
                    : length >= 2 && (body[0] & 0x0f) == 8 && (body[0] >> 4) <= 7 && ((body[0] << 8) | body[1]) % 31 == 0
                        ? new ZLibStream(input, CompressionMode.Decompress)
                        : new DeflateStream(input, CompressionMode.Decompress);
                while (true)
                {
                    if (written == output.Length)
                    {
                        if (written > limit) { overflow = true; break; } // a decompression bomb stops here
                        Grow(ref output, written, limit);
                    }
                    int n;
                    try
                    {
                        n = stream.Read(output, written, output.Length - written);
                    }
                    catch (Exception e) when (e is InvalidDataException or IOException && cut && written > 0)
                    {
                        break; // the cut end of a cut body
                    }
                    if (n == 0) break;
                    written += n;
                }
            }
        }
        catch (Exception e) when (e is InvalidDataException or IOException)
        {
            // bytes that do not inflate (zlib's own errors, e.g. a preset dictionary, are IOExceptions)
            BufferPool.Return(output);
            metrics?.BodyDecodeFailures.Increment();
            return;
        }
        if (written > limit)
        {
            written = limit;
            overflow = true;
        }
        metrics?.BodiesDecoded.Increment();
        m.ReplaceBodyDecoded(output, written, coding, overflow);
    }

    private static void Grow(ref byte[] buffer, int used, int limit)
    {
        var bigger = BufferPool.Rent(Math.Max(Math.Min(buffer.Length * 2, limit + 1), buffer.Length + 1));
        buffer.AsSpan(0, used).CopyTo(bigger);
        BufferPool.Return(buffer);
        buffer = bigger;
    }

    /// <summary>The copy-without-escaping check alone (its tests).</summary>
    internal static bool IsPlainForTests(ReadOnlySpan<byte> s) => Encoder.IsPlain(s);

    /// <summary>JSON string escaping alone (the bench and its tests).</summary>
    internal static void EscapeForBench(MessageBuffer o, ReadOnlySpan<byte> s, bool nested = false) => Encoder.Escaped(o, s, nested);

    /// <summary>The message's fields, written with reusable buffers (one encoder per thread).</summary>
    private sealed class Encoder
    {
        private byte[] _scratch = new byte[1024];

        public void Write(MessageBuffer o, HttpExchange x, AktoIdentity id, long unixSeconds, int bodyCap)
        {
            var req = x.Request;
            var resp = x.Response;
            var info = x.Info;
            // inbound (1): the traced process is the server, its local end is the server's
            var server = info is null ? "" : x.Direction == 1 ? info.LocalEndpoint : info.RemoteEndpoint;
            ReadOnlySpan<byte> clientJson = info is null ? "\"\""u8 : x.Direction == 1 ? RemoteJson(info) : LocalJson(info);
            ReadOnlySpan<byte> serverJson = info is null ? "\"\""u8 : x.Direction == 1 ? LocalJson(info) : RemoteJson(info);
            var reqBody = Body.Of(req, bodyCap);
            var respBody = Body.Of(resp, bodyCap);
            Span<byte> num = stackalloc byte[24];

            Raw(o, "{\"method\":"u8);
            Raw(o, KnownJson(req.Method));
            Raw(o, ",\"path\":"u8);
            Bytes(o, req.TargetBytes);
            Raw(o, ",\"type\":"u8);
            Raw(o, KnownJson(req.Version));
            Raw(o, ",\"statusCode\":\""u8);
            Utf8Formatter.TryFormat(resp.StatusCode, num, out var n);
            Raw(o, num[..n]);
            Raw(o, "\",\"status\":"u8);
            if (resp.ReasonBytes.IsEmpty)
            {
                Raw(o, "\""u8);
                Raw(o, num[..n]);
                Raw(o, "\""u8);
            }
            else
            {
                var reason = resp.ReasonBytes;
                var status = Scratch(n + 1 + reason.Length);
                num[..n].CopyTo(status);
                status[n] = (byte)' ';
                reason.CopyTo(status[(n + 1)..]);
                Bytes(o, status[..(n + 1 + reason.Length)]);
            }
            Raw(o, ",\"requestHeaders\":"u8);
            HeadersString(o, req, reqBody, id.RedactHeaders, server);
            Raw(o, ",\"responseHeaders\":"u8);
            HeadersString(o, resp, respBody, id.RedactHeaders, null);
            Raw(o, ",\"requestPayload\":"u8);
            Payload(o, req, reqBody);
            Raw(o, ",\"responsePayload\":"u8);
            Payload(o, resp, respBody);
            Utf8Formatter.TryFormat(unixSeconds, num, out n);
            if (info is null)
            {
                Before(o, clientJson, serverJson);
                Raw(o, num[..n]);
                After(o, x, id, null);
                return;
            }
            var tail = info.AktoTail;
            if (tail is null || !ReferenceEquals(info.AktoTailIdentity, id) || info.AktoTailDirection != x.Direction ||
                info.AktoTailConnection != x.Connection)
            {
                var w = new MessageBuffer(512);
                Before(w, clientJson, serverJson);
                info.AktoTailSplit = w.WrittenCount;
                After(w, x, id, info);
                info.AktoTail = tail = w.WrittenSpan.ToArray();
                info.AktoTailDirection = x.Direction;
                info.AktoTailConnection = x.Connection;
                info.AktoTailIdentity = id;
            }
            Raw(o, tail.AsSpan(0, info.AktoTailSplit));
            Raw(o, num[..n]);
            Raw(o, tail.AsSpan(info.AktoTailSplit));
        }

        /// <summary>The fields between the payloads and the time, up to the time's opening quote.</summary>
        private static void Before(MessageBuffer o, ReadOnlySpan<byte> clientJson, ReadOnlySpan<byte> serverJson)
        {
            Raw(o, ",\"ip\":"u8);
            Raw(o, clientJson);
            Raw(o, ",\"destIp\":"u8);
            Raw(o, serverJson);
            Raw(o, ",\"time\":\""u8);
        }

        /// <summary>The fields after the time, from its closing quote to the end of the message.</summary>
        private void After(MessageBuffer o, HttpExchange x, AktoIdentity id, ConnectionInfo? info)
        {
            Span<byte> num = stackalloc byte[24];
            Raw(o, "\",\"akto_account_id\":"u8);
            var identity = IdentityJson(id);
            Raw(o, identity.Account);
            Raw(o, ",\"akto_vxlan_id\":"u8);
            Raw(o, identity.Vxlan);
            Raw(o, ",\"is_pending\":\"false\",\"source\":\"MIRRORING\",\"direction\":\""u8);
            Raw(o, x.Direction == 1 ? "1"u8 : "2"u8);
            Raw(o, "\",\"process_id\":\""u8);
            Utf8Formatter.TryFormat(x.Connection.Tgid, num, out var n);
            Raw(o, num[..n]);
            Raw(o, "\",\"socket_id\":\""u8);
            Utf8Formatter.TryFormat(x.Connection.Fd, num, out n);
            Raw(o, num[..n]);
            Raw(o, "\",\"daemonset_id\":"u8);
            Raw(o, identity.Daemonset);
            Raw(o, ",\"process_name\":"u8);
            Raw(o, info is null ? "\"\""u8 : info.ProcessNameJson ??= Json(info.ProcessName));
            Raw(o, ",\"enable_graph\":\"true\"}"u8);
        }

        /// <summary>What of a body is sent, and how it is marked.</summary>
        private readonly struct Body
        {
            public readonly int Length;      // payload bytes sent (text or before base64)
            public readonly bool Base64;
            public readonly bool Plain;      // printable ASCII without quote or backslash: copied as it is
            public readonly bool Withheld;   // a cut JSON body
            public readonly bool Cap, Gap, Incomplete;

            private Body(int length, bool base64, bool withheld, bool cap, bool gap, bool incomplete, bool plain = false)
            {
                Length = length;
                Base64 = base64;
                Plain = plain;
                Withheld = withheld;
                Cap = cap;
                Gap = gap;
                Incomplete = incomplete;
            }

            public bool Cut => Cap || Gap || Incomplete;

            public static Body Of(HttpMessage m, int cap)
            {
                var raw = m.Body;
                var capped = m.BodyTruncated || m.DecodedTruncated;
                if (raw.Length > cap)
                {
                    raw = raw[..cap];
                    capped = true;
                }
                var gap = m.BodyHasGap;
                var incomplete = m.Incomplete;
                var cut = capped || gap || incomplete;
                if (cut && IsJson(m)) return new Body(raw.Length, false, true, capped, gap, incomplete);
                if (m.AlwaysBase64) return new Body(raw.Length, true, false, capped, gap, incomplete);
                // most text bodies: one pass says both "valid UTF-8" and "nothing to escape"
                if (IsPlain(raw)) return new Body(raw.Length, false, false, capped, gap, incomplete, plain: true);
                if (System.Text.Unicode.Utf8.IsValid(raw)) return new Body(raw.Length, false, false, capped, gap, incomplete);
                if (cut)
                {
                    // a cut may fall inside a multi-byte character: drop that partial character
                    for (var trim = 1; trim <= 3 && trim < raw.Length; trim++)
                        if (IsPartialCharAtEnd(raw, trim) && System.Text.Unicode.Utf8.IsValid(raw[..^trim]))
                            return new Body(raw.Length - trim, false, false, capped, gap, incomplete);
                }
                return new Body(raw.Length, true, false, capped, gap, incomplete);
            }

            private static bool IsPartialCharAtEnd(ReadOnlySpan<byte> s, int trim) =>
                (s[^trim] & 0xC0) == 0xC0; // the last `trim` bytes begin with a lead byte
        }

        private static bool IsJson(HttpMessage m)
        {
            var i = m.FindHeader("content-type"u8);
            return i >= 0 && ContainsIgnoreCase(m.HeaderValue(i), "json"u8);
        }

        private static bool ContainsIgnoreCase(ReadOnlySpan<byte> s, ReadOnlySpan<byte> lower)
        {
            for (var i = 0; i + lower.Length <= s.Length; i++)
                if (HttpText.EqualsLower(s.Slice(i, lower.Length), lower)) return true;
            return false;
        }

        private void Payload(MessageBuffer o, HttpMessage m, in Body b)
        {
            if (b.Withheld || b.Length == 0)
            {
                Raw(o, "\"\""u8);
                return;
            }
            var bytes = m.Body[..b.Length];
            if (b.Plain)
            {
                Quoted(o, bytes, nested: false);
                return;
            }
            if (!b.Base64)
            {
                Escaped(o, bytes);
                return;
            }
            var size = Base64.GetMaxEncodedToUtf8Length(bytes.Length) + 2;
            var span = o.GetSpan(size);
            span[0] = (byte)'"';
            Base64.EncodeToUtf8(bytes, span[1..], out _, out var written);
            span[written + 1] = (byte)'"';
            o.Advance(written + 2);
        }

        /// <summary>The headers object as a JSON string: the object's JSON, escaped once more, written
        /// straight into the message (names and values need no escaping in most messages: then
        /// they are copied as they are).</summary>
        private void HeadersString(MessageBuffer o, HttpMessage m, in Body body, IReadOnlyCollection<string> redact, string? serverForHost)
        {
            Raw(o, "\"{"u8);
            var first = true;
            var hasHost = false;
            var count = m.HeaderCount;
            Span<int> firstOf = count <= 64 ? stackalloc int[count] : new int[count];
            FirstOccurrences(m, firstOf);
            var plain = PlainFields(m);
            for (var i = 0; i < count; i++)
            {
                var name = m.HeaderName(i);
                if (m.DecodedFrom is not null && HttpText.EqualsLower(name, "content-encoding"u8))
                    continue; // the payload is sent decoded: the coding no longer applies
                if (firstOf[i] != i) continue; // joined into its first occurrence
                if (!hasHost && HttpText.EqualsLower(name, "host"u8)) hasHost = true;
                var redacted = redact.Count > 0 && IsRedacted(name, redact);
                var next = NextSame(firstOf, i, i + 1);
                if (i < 64 && (plain & (1UL << i)) != 0 && !redacted && next < 0)
                {
                    // the common field: ,\"name\":\"value\" in one piece, nothing to check or escape
                    var value = m.HeaderValue(i);
                    var span = o.GetSpan(name.Length + value.Length + 11);
                    var w = 0;
                    if (!first) span[w++] = (byte)',';
                    "\\\""u8.CopyTo(span[w..]);
                    name.CopyTo(span[(w + 2)..]);
                    w += 2 + name.Length;
                    "\\\":\\\""u8.CopyTo(span[w..]);
                    value.CopyTo(span[(w + 5)..]);
                    w += 5 + value.Length;
                    "\\\""u8.CopyTo(span[w..]);
                    o.Advance(w + 2);
                    first = false;
                    continue;
                }
                if (!first) Raw(o, ","u8);
                first = false;
                Bytes(o, name, Nested);
                Raw(o, ":"u8);
                if (redacted)
                {
                    Text(o, RedactedValue, Nested);
                    continue;
                }
                if (next < 0)
                {
                    Bytes(o, m.HeaderValue(i), Nested);
                    continue;
                }
                // repeated field: every value kept, joined with ", " in the order sent
                var joined = 0;
                var buffer = Scratch(m.HeaderValue(i).Length);
                m.HeaderValue(i).CopyTo(buffer);
                joined = m.HeaderValue(i).Length;
                for (var k = next; k >= 0; k = NextSame(firstOf, i, k + 1))
                {
                    var v = m.HeaderValue(k);
                    buffer = ScratchKeep(joined + 2 + v.Length, joined);
                    buffer[joined] = (byte)',';
                    buffer[joined + 1] = (byte)' ';
                    v.CopyTo(buffer[(joined + 2)..]);
                    joined += 2 + v.Length;
                }
                Bytes(o, _scratch.AsSpan(0, joined), Nested);
            }
            if (serverForHost is not null && !hasHost)
            {
                var host = HostFallback(m, serverForHost);
                if (host.Length > 0)
                {
                    if (!first) Raw(o, ","u8);
                    first = false;
                    Raw(o, "\\\"host\\\":"u8);
                    Text(o, host, Nested);
                }
            }
            if (m.DecodedFrom is not null)
            {
                if (!first) Raw(o, ","u8);
                first = false;
                Raw(o, "\\\"x-collector-decoded\\\":"u8);
                Text(o, m.DecodedFrom, Nested);
            }
            if (body.Cut)
            {
                if (!first) Raw(o, ","u8);
                first = false;
                Raw(o, "\\\"x-collector-body-truncated\\\":"u8);
                Text(o, TruncationNote(m, body), Nested);
            }
            if (body.Base64)
            {
                if (!first) Raw(o, ","u8);
                Raw(o, "\\\"x-collector-body-encoding\\\":\\\"base64\\\""u8);
            }
            Raw(o, "}\""u8);
        }

        /// <summary>Bit i set: field i (of the first 64), name and value, is plain (IsPlain). One pass
        /// over the fields' bytes, which lie one after the other in the message's buffer: each byte
        /// that is not plain (rare: ETag quotes, non-ASCII) clears its field's bit. Per-field checks
        /// cost a call each for a dozen short spans per message.</summary>
        private static ulong PlainFields(HttpMessage m)
        {
            var count = Math.Min(m.HeaderCount, 64);
            if (count == 0) return 0;
            var bytes = m.FieldBytes(count, out var offset);
            var plain = count == 64 ? ulong.MaxValue : (1UL << count) - 1;
            var field = 0;
            var p = 0;
            if (Vector256.IsHardwareAccelerated)
            {
                ref var start = ref MemoryMarshal.GetReference(bytes);
                for (; p + Vector256<byte>.Count <= bytes.Length; p += Vector256<byte>.Count)
                {
                    var bits = NotPlain(Vector256.LoadUnsafe(ref start, (nuint)p)).ExtractMostSignificantBits();
                    while (bits != 0)
                    {
                        var at = offset + p + BitOperations.TrailingZeroCount(bits);
                        bits &= bits - 1;
                        while (m.FieldEnd(field) <= at) field++;
                        plain &= ~(1UL << field);
                    }
                }
            }
            for (; p < bytes.Length; p++)
            {
                if (IsPlain(bytes[p])) continue;
                while (m.FieldEnd(field) <= offset + p) field++;
                plain &= ~(1UL << field);
            }
            return plain;
        }

        /// <summary>A string inside the headers object, itself inside a string: escaped twice.</summary>
        private const bool Nested = true;

        /// <summary>For each field, the index of the first field of the same name (case-insensitive).
        /// A small key (length, first and last letter) is compared first: names are compared whole
        /// only when their keys match.</summary>
        private static void FirstOccurrences(HttpMessage m, Span<int> firstOf)
        {
            Span<int> keys = firstOf.Length <= 64 ? stackalloc int[firstOf.Length] : new int[firstOf.Length];
            var seen = 0UL; // one bit per key hash: a key not seen before needs no search
            for (var i = 0; i < firstOf.Length; i++)
            {
                keys[i] = NameKey(m.HeaderName(i));
                firstOf[i] = i;
                var bit = 1UL << (int)(((uint)keys[i] * 0x9E3779B1u) >> 26);
                if ((seen & bit) == 0)
                {
                    seen |= bit;
                    continue;
                }
                for (var j = 0; j < i; j++)
                {
                    if (keys[j] != keys[i] || firstOf[j] != j || !HttpText.EqualsIgnoreCase(m.HeaderName(j), m.HeaderName(i))) continue;
                    firstOf[i] = j;
                    break;
                }
            }
        }

        /// <summary>The next field from `from` on that has the same name as field `first`.</summary>
        private static int NextSame(ReadOnlySpan<int> firstOf, int first, int from)
        {
            for (var k = from; k < firstOf.Length; k++)
                if (firstOf[k] == first) return k;
            return -1;
        }

        private static int NameKey(ReadOnlySpan<byte> name) =>
            name.IsEmpty ? 0 : (name.Length & 0xFFFF) | ((name[0] | 0x20) << 16) | ((name[^1] | 0x20) << 24);

        private static bool IsRedacted(ReadOnlySpan<byte> name, IReadOnlyCollection<string> redact)
        {
            foreach (var r in redact)
                if (HttpText.EqualsIgnoreCase(name, r)) return true;
            return false;
        }

        private static string TruncationNote(HttpMessage m, in Body b)
        {
            var reasons = (b.Cap ? "cap," : "") + (b.Gap ? "gap," : "") + (b.Incomplete ? "incomplete," : "");
            var note = $"{reasons.TrimEnd(',')}; kept={(b.Withheld ? 0 : b.Length)}; wire={m.BodyTotalBytes}";
            return b.Withheld ? note + "; json body withheld" : note;
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

        private Span<byte> Scratch(int size)
        {
            if (_scratch.Length < size) _scratch = new byte[Math.Max(size, _scratch.Length * 2)];
            return _scratch;
        }

        private Span<byte> ScratchKeep(int size, int keep)
        {
            if (_scratch.Length < size)
            {
                var bigger = new byte[Math.Max(size, _scratch.Length * 2)];
                _scratch.AsSpan(0, keep).CopyTo(bigger);
                _scratch = bigger;
            }
            return _scratch;
        }

        // ---- JSON primitives ----

        private static void Raw(MessageBuffer o, ReadOnlySpan<byte> bytes) => o.Write(bytes);

        private byte[] LocalJson(ConnectionInfo info) => info.LocalEndpointJson ??= Json(info.LocalEndpoint);
        private byte[] RemoteJson(ConnectionInfo info) => info.RemoteEndpointJson ??= Json(info.RemoteEndpoint);

        // methods and versions: the parser interns the standard ones, so their JSON is made once
        private readonly Dictionary<string, byte[]> _known = new(ReferenceEqualityComparer.Instance);

        private ReadOnlySpan<byte> KnownJson(string s)
        {
            if (_known.TryGetValue(s, out var json)) return json;
            json = Json(s);
            if (_known.Count < 64 && ReferenceEquals(string.IsInterned(s), s)) _known[s] = json; // a custom token is not kept
            return json;
        }

        private AktoIdentity? _identity;
        private (byte[] Account, byte[] Vxlan, byte[] Daemonset) _identityJson;

        /// <summary>The identity's fields as JSON strings, made once per identity.</summary>
        private (byte[] Account, byte[] Vxlan, byte[] Daemonset) IdentityJson(AktoIdentity id)
        {
            if (!ReferenceEquals(id, _identity))
            {
                _identityJson = (Json(id.AccountId), Json(id.VxlanId), Json(id.DaemonsetId));
                _identity = id;
            }
            return _identityJson;
        }

        private byte[] Json(string s)
        {
            var w = new MessageBuffer(s.Length * 7 + 64);
            Text(w, s);
            return w.WrittenSpan.ToArray();
        }

        /// <summary>A JSON string from a .NET string (nested: the string inside a string).</summary>
        private void Text(MessageBuffer o, string s, bool nested = false)
        {
            var max = Encoding.UTF8.GetMaxByteCount(s.Length);
            var buffer = Scratch(max);
            var n = Encoding.UTF8.GetBytes(s, buffer);
            Escaped(o, buffer[..n], nested);
        }

        /// <summary>A JSON string from bytes that are UTF-8 when valid, else ISO-8859-1.</summary>
        private void Bytes(MessageBuffer o, ReadOnlySpan<byte> bytes, bool nested = false)
        {
            if (IsPlain(bytes))
            {
                Quoted(o, bytes, nested);
                return;
            }
            if (System.Text.Unicode.Utf8.IsValid(bytes))
            {
                Escaped(o, bytes, nested);
                return;
            }
            // Latin-1 → UTF-8 (each byte at most two); the source may live in _scratch, so copy first
            var source = ArrayPool<byte>.Shared.Rent(bytes.Length);
            try
            {
                bytes.CopyTo(source);
                var buffer = Scratch(bytes.Length * 2);
                var n = 0;
                foreach (var c in source.AsSpan(0, bytes.Length))
                {
                    if (c < 0x80) buffer[n++] = c;
                    else
                    {
                        buffer[n++] = (byte)(0xC0 | (c >> 6));
                        buffer[n++] = (byte)(0x80 | (c & 0x3F));
                    }
                }
                Escaped(o, buffer[..n], nested);
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(source);
            }
        }

        /// <summary>A JSON string from bytes that need no escaping (IsPlain), in quotes (escaped
        /// quotes when nested).</summary>
        private static void Quoted(MessageBuffer o, ReadOnlySpan<byte> s, bool nested)
        {
            var span = o.GetSpan(s.Length + 4);
            var written = 0;
            if (nested) span[written++] = (byte)'\\';
            span[written++] = (byte)'"';
            s.CopyTo(span[written..]);
            written += s.Length;
            if (nested) span[written++] = (byte)'\\';
            span[written++] = (byte)'"';
            o.Advance(written);
        }

        /// <summary>Whether every byte is printable ASCII other than quote and backslash (DEL
        /// included): such bytes are valid UTF-8 and go into a JSON string as they are. Most
        /// header fields and many bodies are; one pass answers what a UTF-8 check and a search for
        /// escapes answered in two.</summary>
        internal static bool IsPlain(ReadOnlySpan<byte> s)
        {
            ref var p = ref MemoryMarshal.GetReference(s);
            var n = (nuint)s.Length;
            if (Vector256.IsHardwareAccelerated && n >= (nuint)Vector256<byte>.Count)
            {
                nuint i = 0;
                for (; i + (nuint)Vector256<byte>.Count <= n; i += (nuint)Vector256<byte>.Count)
                    if (!IsPlain(Vector256.LoadUnsafe(ref p, i))) return false;
                // the tail: the last 32 bytes, overlapping what was checked
                return i == n || IsPlain(Vector256.LoadUnsafe(ref p, n - (nuint)Vector256<byte>.Count));
            }
            if (Vector128.IsHardwareAccelerated && n >= (nuint)Vector128<byte>.Count)
            {
                nuint i = 0;
                for (; i + (nuint)Vector128<byte>.Count <= n; i += (nuint)Vector128<byte>.Count)
                    if (!IsPlain(Vector128.LoadUnsafe(ref p, i))) return false;
                return i == n || IsPlain(Vector128.LoadUnsafe(ref p, n - (nuint)Vector128<byte>.Count));
            }
            for (nuint i = 0; i < n; i++)
                if (!IsPlain(Unsafe.Add(ref p, i))) return false;
            return true;
        }

        // a signed compare catches controls (below 0x20) and non-ASCII bytes (0x80 and up) at once
        private static bool IsPlain(byte c) => (sbyte)c >= 0x20 && c != (byte)'"' && c != (byte)'\\';

        private static bool IsPlain(Vector256<byte> v) => NotPlain(v) == Vector256<byte>.Zero;

        private static bool IsPlain(Vector128<byte> v) =>
            (Vector128.LessThan(v.AsSByte(), Vector128.Create((sbyte)0x20)).AsByte() |
             Vector128.Equals(v, Vector128.Create((byte)'"')) | Vector128.Equals(v, Vector128.Create((byte)'\\'))) == Vector128<byte>.Zero;

        /// <summary>Set where a byte is not plain.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static Vector256<byte> NotPlain(Vector256<byte> v) =>
            Vector256.LessThan(v.AsSByte(), Vector256.Create((sbyte)0x20)).AsByte() |
            Vector256.Equals(v, Vector256.Create((byte)'"')) | Vector256.Equals(v, Vector256.Create((byte)'\\'));

        /// <summary>A JSON string from valid UTF-8: quotes, backslashes and control characters
        /// escaped, everything else copied as it is. 32 bytes at a time: one compare finds every
        /// byte of the block that needs escaping, and the runs between them are moved with 32-byte
        /// copies (a JSON body has a quote every few bytes: a byte-by-byte loop or a search per
        /// escape costs 2-4 times as much). Nested: a string inside the headers string, its quotes
        /// written escaped and its content escaped twice.</summary>
        internal static void Escaped(MessageBuffer o, ReadOnlySpan<byte> s, bool nested = false)
        {
            var span = o.GetSpan(s.Length * 7 + 4 + Vector256<byte>.Count);
            var written = 0;
            if (nested) span[written++] = (byte)'\\';
            span[written++] = (byte)'"';
            written += Escape(s, span[written..], nested);
            if (nested) span[written++] = (byte)'\\';
            span[written++] = (byte)'"';
            o.Advance(written);
        }

        private static readonly SearchValues<byte> NeedsEscape = SearchValues.Create(
            [.. Enumerable.Range(0, 0x20).Select(b => (byte)b), (byte)'"', (byte)'\\']);

        /// <summary>Escapes s into d (room for 7 bytes per input byte plus 32), once or twice;
        /// returns bytes written.</summary>
        private static int Escape(ReadOnlySpan<byte> s, Span<byte> d, bool twice)
        {
            // Most fields (names, values, addresses) and many bodies need no escaping at all: one
            // vectorized search (short inputs included) and a copy.
            var first = s.IndexOfAny(NeedsEscape);
            if (first < 0)
            {
                s.CopyTo(d);
                return s.Length;
            }
            s[..first].CopyTo(d);
            return first + EscapeFrom(s[first..], d[first..], twice);
        }

        private static int EscapeFrom(ReadOnlySpan<byte> s, Span<byte> d, bool twice)
        {
            ref var src = ref MemoryMarshal.GetReference(s);
            ref var dst = ref MemoryMarshal.GetReference(d);
            nuint i = 0, o = 0, n = (nuint)s.Length;
            if (Vector256.IsHardwareAccelerated)
            {
                var space = Vector256.Create((byte)0x20);
                var quote = Vector256.Create((byte)'"');
                var backslash = Vector256.Create((byte)'\\');
                // a run is copied with a 32-byte load from where it starts: keep 64 bytes ahead in the input
                while (i + 2 * (nuint)Vector256<byte>.Count <= n)
                {
                    var v = Vector256.LoadUnsafe(ref src, i);
                    var bits = (Vector256.LessThan(v, space) | Vector256.Equals(v, quote) | Vector256.Equals(v, backslash)).ExtractMostSignificantBits();
                    if (bits == 0)
                    {
                        v.StoreUnsafe(ref dst, o);
                        i += (nuint)Vector256<byte>.Count;
                        o += (nuint)Vector256<byte>.Count;
                        continue;
                    }
                    nuint start = 0;
                    do
                    {
                        var at = (nuint)BitOperations.TrailingZeroCount(bits);
                        bits &= bits - 1;
                        Vector256.LoadUnsafe(ref src, i + start).StoreUnsafe(ref dst, o); // the run [start, at), and more
                        o += at - start;
                        o += twice ? EscapeTwice(Unsafe.Add(ref src, i + at), ref Unsafe.Add(ref dst, o))
                                   : EscapeOne(Unsafe.Add(ref src, i + at), ref Unsafe.Add(ref dst, o));
                        start = at + 1;
                    } while (bits != 0);
                    Vector256.LoadUnsafe(ref src, i + start).StoreUnsafe(ref dst, o); // the block's tail
                    o += (nuint)Vector256<byte>.Count - start;
                    i += (nuint)Vector256<byte>.Count;
                }
            }
            for (; i < n; i++)
            {
                var c = Unsafe.Add(ref src, i);
                if (c >= 0x20 && c != (byte)'"' && c != (byte)'\\') Unsafe.Add(ref dst, o++) = c;
                else o += twice ? EscapeTwice(c, ref Unsafe.Add(ref dst, o)) : EscapeOne(c, ref Unsafe.Add(ref dst, o));
            }
            return (int)o;
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static nuint EscapeOne(byte c, ref byte d)
        {
            Unsafe.Add(ref d, 0) = (byte)'\\';
            switch (c)
            {
                case (byte)'"': Unsafe.Add(ref d, 1) = (byte)'"'; return 2;
                case (byte)'\\': Unsafe.Add(ref d, 1) = (byte)'\\'; return 2;
                case (byte)'\n': Unsafe.Add(ref d, 1) = (byte)'n'; return 2;
                case (byte)'\r': Unsafe.Add(ref d, 1) = (byte)'r'; return 2;
                case (byte)'\t': Unsafe.Add(ref d, 1) = (byte)'t'; return 2;
                default:
                    Unsafe.Add(ref d, 1) = (byte)'u';
                    Unsafe.Add(ref d, 2) = (byte)'0';
                    Unsafe.Add(ref d, 3) = (byte)'0';
                    Unsafe.Add(ref d, 4) = Hex(c >> 4);
                    Unsafe.Add(ref d, 5) = Hex(c & 0xF);
                    return 6;
            }
        }

        /// <summary>The escape of the escape: what EscapeOne writes, escaped again (a quote becomes
        /// backslash, backslash, backslash, quote).</summary>
        private static nuint EscapeTwice(byte c, ref byte d)
        {
            Span<byte> once = stackalloc byte[6];
            var n = (int)EscapeOne(c, ref once[0]);
            nuint o = 0;
            for (var i = 0; i < n; i++)
            {
                var b = once[i];
                if (b == (byte)'\\' || b == (byte)'"') Unsafe.Add(ref d, o++) = (byte)'\\';
                Unsafe.Add(ref d, o++) = b;
            }
            return o;
        }

        private static byte Hex(int v) => (byte)(v < 10 ? '0' + v : 'a' + v - 10);
    }
}
