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

using static Collector.Output.JsonText;

namespace Collector.Output;

/// <summary>The last step of the output: writes the Akto message's fields in their order, JSON
/// escaped, from what the steps before decided (<see cref="MessageParts"/>). It knows the field
/// order and the escaping and nothing else; one writer per thread, its buffers reused.</summary>
internal sealed class AktoWriter
{
    private byte[] _scratch = new byte[1024];

    public void Write(MessageBuffer o, HttpExchange x, AktoIdentity id, long unixSeconds, MessageParts parts)
    {
        var req = x.Request;
        var resp = x.Response;
        var info = x.Info;
        ReadOnlySpan<byte> clientJson = info is null ? "\"\""u8 : x.Direction == 1 ? RemoteJson(info) : LocalJson(info);
        ReadOnlySpan<byte> serverJson = info is null ? "\"\""u8 : x.Direction == 1 ? LocalJson(info) : RemoteJson(info);
        Span<byte> num = stackalloc byte[24];

        Raw(o, "{\"method\":"u8);
        Raw(o, KnownJson(req.Method));
        Raw(o, ",\"path\":"u8);
        Bytes(o, parts.TargetOverride ?? req.TargetBytes);
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
        HeadersString(o, parts.Request);
        Raw(o, ",\"responseHeaders\":"u8);
        HeadersString(o, parts.Response);
        Raw(o, ",\"requestPayload\":"u8);
        Payload(o, parts.Request);
        Raw(o, ",\"responsePayload\":"u8);
        Payload(o, parts.Response);
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


    private void Payload(MessageBuffer o, SideParts side)
    {
        var b = side.Plan;
        if (b.Withheld || b.Length == 0)
        {
            Raw(o, "\"\""u8);
            return;
        }
        var bytes = side.Body[..b.Length];
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
    /// they are copied as they are). Fields as received, with the side's edits, then the fields
    /// the steps added.</summary>
    private void HeadersString(MessageBuffer o, SideParts side)
    {
        var m = side.Message;
        Raw(o, "\"{"u8);
        var first = true;
        var count = m.HeaderCount;
        Span<int> firstOf = count <= 64 ? stackalloc int[count] : new int[count];
        FirstOccurrences(m, firstOf);
        var plain = PlainFields(m);
        var edited = side.Edits.Count > 0;
        for (var i = 0; i < count; i++)
        {
            if (firstOf[i] != i) continue; // joined into its first occurrence
            var name = m.HeaderName(i);
            var next = NextSame(firstOf, i, i + 1);
            HeaderEdit edit = default;
            var hasEdit = edited && side.TryEdit(i, out edit);
            if (hasEdit && edit.Value is null) continue; // removed
            if (i < 64 && (plain & (1UL << i)) != 0 && !hasEdit && next < 0)
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
            if (hasEdit && (edit.WholeField || next < 0))
            {
                Bytes(o, edit.Value, Nested);
                continue;
            }
            if (next < 0)
            {
                Bytes(o, m.HeaderValue(i), Nested);
                continue;
            }
            // repeated field: every value kept, joined with ", " in the order sent
            var joined = 0;
            var buffer = _scratch.AsSpan(0, 0);
            for (var k = i; k >= 0; k = NextSame(firstOf, i, k + 1))
            {
                var v = edited && side.TryEdit(k, out var e) && e.Value is not null ? e.Value : m.HeaderValue(k);
                var sep = k == i ? 0 : 2;
                buffer = ScratchKeep(joined + sep + v.Length, joined);
                if (sep > 0)
                {
                    buffer[joined] = (byte)',';
                    buffer[joined + 1] = (byte)' ';
                }
                v.CopyTo(buffer[(joined + sep)..]);
                joined += sep + v.Length;
            }
            Bytes(o, _scratch.AsSpan(0, joined), Nested);
        }
        foreach (var (addedName, addedValue) in side.Added)
        {
            if (!first) Raw(o, ","u8);
            first = false;
            Text(o, addedName, Nested);
            Raw(o, ":"u8);
            Text(o, addedValue, Nested);
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

}
