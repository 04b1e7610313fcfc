using System.Text;

namespace Collector.Http;

/// <summary>One parsed HTTP/1.x request or response.
///
/// The start line and the header fields are kept as the bytes that were sent, in one pooled
/// buffer (names with their original case, values trimmed, in order, repeats kept); strings are
/// made only when asked for. The body is kept in a second pooled buffer, up to the body cap.
/// Both buffers go back to the pool on Dispose, or as soon as the message is marked lost.
///
/// A lost message (<see cref="LostReason"/>) is a placeholder: the parser saw the message begin
/// (so a response can still be paired with the right request) but could not keep it whole.</summary>
public sealed class HttpMessage : IDisposable
{
    private struct Field
    {
        public int NameStart, NameLength, ValueStart, ValueLength;
    }

    private byte[]? _head;
    private int _headLength;
    private Field[]? _fields;
    private int _fieldCount;
    private int _targetStart, _targetLength, _reasonStart, _reasonLength;
    private string? _target, _reason, _host;
    private byte[]? _body;

    private bool _isRequest;
    private string _method = "", _version = "";
    private int _status;

    // The init accessors build a message by hand (tests, tools); the parser fills it in place.
    public bool IsRequest { get => _isRequest; init => _isRequest = value; }
    /// <summary>The method token as sent.</summary>
    public string Method { get => _method; init => _method = value; }
    public string Version { get => _version; init => _version = value; }
    public int StatusCode { get => _status; init => _status = value; }

    /// <summary>The request-target exactly as sent (origin, absolute, authority or asterisk form).</summary>
    public string Target
    {
        get => _target ??= HttpText.Decode(TargetBytes);
        init
        {
            var bytes = Encoding.UTF8.GetBytes(value);
            _targetStart = Append(bytes);
            _targetLength = bytes.Length;
            _target = value;
        }
    }

    public ReadOnlySpan<byte> TargetBytes => _head is null ? default : _head.AsSpan(_targetStart, _targetLength);

    public string Reason
    {
        get => _reason ??= HttpText.Decode(ReasonBytes);
        init
        {
            var bytes = Encoding.UTF8.GetBytes(value);
            _reasonStart = Append(bytes);
            _reasonLength = bytes.Length;
            _reason = value;
        }
    }

    public ReadOnlySpan<byte> ReasonBytes => _head is null ? default : _head.AsSpan(_reasonStart, _reasonLength);

    /// <summary>Kernel time (CLOCK_MONOTONIC ns) of the event that carried the first byte.</summary>
    public ulong FirstByteNs { get; internal set; }
    /// <summary>Kernel time of the event that carried the last byte.</summary>
    public ulong LastByteNs { get; internal set; }

    /// <summary>Why the message could not be kept (a metric label), or null when it is whole.</summary>
    public string? LostReason { get; private set; }
    public bool IsLost => LostReason is not null;

    /// <summary>The connection has put this request in its FIFO (set by the connection).</summary>
    internal bool Queued { get; set; }

    /// <summary>A 1xx response other than 101: not the answer yet.</summary>
    public bool IsInterim => !IsRequest && StatusCode is >= 100 and < 200 && StatusCode != 101;

    // ---- header fields ----

    public int HeaderCount => _fieldCount;

    public ReadOnlySpan<byte> HeaderName(int i)
    {
        ref var f = ref _fields![i];
        return _head.AsSpan(f.NameStart, f.NameLength);
    }

    public ReadOnlySpan<byte> HeaderValue(int i)
    {
        ref var f = ref _fields![i];
        return _head.AsSpan(f.ValueStart, f.ValueLength);
    }

    /// <summary>The bytes of fields [0, count), names and values, as they lie one after the other
    /// in the message's buffer (the encoder scans them in one pass), and where field i ends in it.</summary>
    internal ReadOnlySpan<byte> FieldBytes(int count, out int offset)
    {
        offset = _fields![0].NameStart;
        ref var last = ref _fields[count - 1];
        return _head.AsSpan(offset, last.ValueStart + last.ValueLength - offset);
    }

    /// <summary>Where field i's value starts in the buffer <see cref="FieldBytes"/> reads (less its offset).</summary>
    internal int ValueStart(int i) => _fields![i].ValueStart;

    internal int FieldEnd(int i)
    {
        ref var f = ref _fields![i];
        return f.ValueStart + f.ValueLength;
    }

    /// <summary>Header fields as strings, in order, repeats kept (each read decodes: for filters,
    /// tests and tools; the output reads the bytes). Add appends a field to a message built by hand.
    /// A view of the message: copy what must outlive its Dispose.</summary>
    public HeaderList Headers => new(this);

    public readonly struct HeaderList(HttpMessage message) : IReadOnlyList<KeyValuePair<string, string>>
    {
        public int Count => message._fieldCount;

        public KeyValuePair<string, string> this[int index] =>
            (uint)index < (uint)message._fieldCount
                ? new(HttpText.Decode(message.HeaderName(index)), HttpText.Decode(message.HeaderValue(index)))
                : throw new ArgumentOutOfRangeException(nameof(index));

        public void Add(KeyValuePair<string, string> field) =>
            message.AddHeader(Encoding.UTF8.GetBytes(field.Key), Encoding.UTF8.GetBytes(field.Value));

        public Enumerator GetEnumerator() => new(message);
        IEnumerator<KeyValuePair<string, string>> IEnumerable<KeyValuePair<string, string>>.GetEnumerator() => GetEnumerator();
        System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();

        public struct Enumerator(HttpMessage message) : IEnumerator<KeyValuePair<string, string>>
        {
            private int _i = -1;
            public bool MoveNext() => ++_i < message._fieldCount;
            public readonly KeyValuePair<string, string> Current =>
                new(HttpText.Decode(message.HeaderName(_i)), HttpText.Decode(message.HeaderValue(_i)));
            readonly object System.Collections.IEnumerator.Current => Current;
            public void Reset() => _i = -1;
            public readonly void Dispose() { }
        }
    }

    /// <summary>The value of a header (name matched case-insensitively); repeated fields are joined
    /// with ", " in the order sent. Null when absent.</summary>
    public string? Header(string name)
    {
        var isHost = name.Length == 4 && name.Equals("host", StringComparison.OrdinalIgnoreCase);
        if (isHost && _host is not null) return _host;
        string? value = null;
        for (var i = 0; i < _fieldCount; i++)
        {
            if (!HttpText.EqualsIgnoreCase(HeaderName(i), name)) continue;
            // a node's requests name few hosts: the same bytes give the same string, made once
            var v = isHost ? HostStrings.Get(HeaderValue(i)) : HttpText.Decode(HeaderValue(i));
            value = value is null ? v : value + ", " + v;
        }
        if (isHost) _host = value;
        return value;
    }

    /// <summary>Index of the first field with this name (ASCII lower-case bytes), or -1.</summary>
    public int FindHeader(ReadOnlySpan<byte> lowerName, int start = 0)
    {
        for (var i = start; i < _fieldCount; i++)
        {
            ref var f = ref _fields![i];
            // the length first, here: most names differ in it, and the compare is a call
            if (f.NameLength == lowerName.Length && HttpText.EqualsLower(_head.AsSpan(f.NameStart, f.NameLength), lowerName)) return i;
        }
        return -1;
    }

    // ---- body ----

    public int BodyLength { get; private set; }
    /// <summary>Bytes of body the message carried on the wire, including what was not kept.</summary>
    public long BodyTotalBytes { get; private set; }
    /// <summary>The body was longer than the cap: only BodyLength bytes were kept.</summary>
    public bool BodyTruncated { get; internal set; }
    /// <summary>Bytes of the body are missing (a gap in the capture): only the bytes before the
    /// first hole are kept, and the body is never presented as whole.</summary>
    public bool BodyHasGap { get; private set; }
    /// <summary>The connection ended (or was forgotten) before the framing said the message was complete.</summary>
    public bool Incomplete { get; internal set; }

    /// <summary>The content-coding the body was decoded from (gzip, deflate, br), once the output
    /// stage has decoded it; the body then holds the decoded bytes.</summary>
    public string? DecodedFrom { get; private set; }
    /// <summary>The decoded body was longer than the decoding limit: it was cut.</summary>
    public bool DecodedTruncated { get; private set; }
    internal bool DecodeAttempted { get; set; }
    /// <summary>The body is sent in base64 whatever its bytes (a gRPC message: the processor
    /// base64-decodes it before reading the protobuf, even when the bytes happen to be text).</summary>
    internal bool AlwaysBase64 { get; set; }

    public ReadOnlySpan<byte> Body => _body is null ? default : _body.AsSpan(0, BodyLength);
    internal byte[]? BodyArray => _body;

    /// <summary>Bytes this message holds in memory (its pooled buffers), for the memory budget.</summary>
    public int RetainedBytes => _headCapacity + _bodyCapacity;

    // the sizes of _head and _body, kept beside them: RetainedBytes is read after every event that
    // touched the message, and reading the arrays' own lengths would bring two cold lines in
    private int _headCapacity, _bodyCapacity;

    /// <summary>Tests: <see cref="RetainedBytes"/> from the arrays themselves.</summary>
    internal int RecountRetainedBytes() => (_head?.Length ?? 0) + (_body?.Length ?? 0);

    // ---- building (the parser) ----

    internal void SetRequestLine(string method, ReadOnlySpan<byte> target, string version)
    {
        _isRequest = true;
        _method = method;
        _version = version;
        _targetStart = Append(target);
        _targetLength = target.Length;
    }

    internal void SetStatusLine(string version, int status, ReadOnlySpan<byte> reason)
    {
        _isRequest = false;
        _version = version;
        _status = status;
        _reasonStart = Append(reason);
        _reasonLength = reason.Length;
    }

    internal void AddHeader(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value)
    {
        ref var f = ref NextField();
        f.NameStart = Append(name);
        f.NameLength = name.Length;
        f.ValueStart = Append(value);
        f.ValueLength = value.Length;
    }

    /// <summary>A field whose name and value lie one after the other in <paramref name="nameAndValue"/>
    /// (as a decoded HTTP/2 header block holds them): copied in one piece.</summary>
    internal void AddHeader(ReadOnlySpan<byte> nameAndValue, int nameLength)
    {
        ref var f = ref NextField();
        f.NameStart = Append(nameAndValue);
        f.NameLength = nameLength;
        f.ValueStart = f.NameStart + nameLength;
        f.ValueLength = nameAndValue.Length - nameLength;
    }

    /// <summary>Fields whose names and values lie one after the other in <paramref name="bytes"/> (as a
    /// decoded HTTP/2 header block holds them), copied in one piece. Each field's positions are
    /// given from where <paramref name="bytes"/> would start at <paramref name="origin"/>.</summary>
    internal void AddHeaders(ReadOnlySpan<byte> bytes, ReadOnlySpan<(int Name, int NameLength, int Value, int ValueLength)> fields, int origin)
    {
        var shift = Append(bytes) - origin;
        foreach (var (name, nameLength, value, valueLength) in fields)
        {
            ref var f = ref NextField();
            f.NameStart = name + shift;
            f.NameLength = nameLength;
            f.ValueStart = value + shift;
            f.ValueLength = valueLength;
        }
    }

    private ref Field NextField()
    {
        if (_fields is null) _fields = new Field[24]; // kept with the (pooled) message object
        else if (_fieldCount == _fields.Length) Array.Resize(ref _fields, _fields.Length * 2);
        return ref _fields[_fieldCount++];
    }

    /// <summary>This message's start line and header fields become a copy of another's (the body
    /// is not copied): one gRPC stream gives one exchange per message pair.</summary>
    internal void CopyHeadFrom(HttpMessage source)
    {
        if (source.IsRequest) SetRequestLine(source.Method, source.TargetBytes, source.Version);
        else SetStatusLine(source.Version, source.StatusCode, source.ReasonBytes);
        for (var i = 0; i < source.HeaderCount; i++) AddHeader(source.HeaderName(i), source.HeaderValue(i));
        FirstByteNs = source.FirstByteNs;
        LastByteNs = source.LastByteNs;
    }

    /// <summary>Obsolete line folding: the line continues the last field's value (joined by a space).</summary>
    internal bool ContinueLastHeader(ReadOnlySpan<byte> more)
    {
        if (_fieldCount == 0) return false;
        ref var f = ref _fields![_fieldCount - 1];
        if (f.ValueStart + f.ValueLength != _headLength) return false;
        if (more.IsEmpty) return true;
        if (f.ValueLength > 0)
        {
            Append(" "u8);
            f.ValueLength++;
        }
        Append(more);
        f.ValueLength += more.Length;
        return true;
    }

    private int Append(ReadOnlySpan<byte> data)
    {
        var start = _headLength;
        if (data.IsEmpty) return start;
        var need = _headLength + data.Length;
        if (_head is null || _head.Length < need)
        {
            var bigger = BufferPool.Rent(Math.Max(need, _head is null ? SmallHead : _head.Length * 2));
            if (_head is not null)
            {
                _head.AsSpan(0, _headLength).CopyTo(bigger);
                BufferPool.Return(_head);
            }
            _head = bigger;
            _headCapacity = bigger.Length;
        }
        data.CopyTo(_head.AsSpan(_headLength));
        _headLength = need;
        return start;
    }

    internal void AppendBody(ReadOnlySpan<byte> data, int cap)
    {
        BodyTotalBytes += data.Length;
        if (IsLost || BodyHasGap) return; // after a hole, later bytes would sit next to the wrong ones
        var room = cap - BodyLength;
        if (room <= 0)
        {
            if (!data.IsEmpty) BodyTruncated = true;
            return;
        }
        var take = Math.Min(room, data.Length);
        if (take < data.Length) BodyTruncated = true;
        if (_body is null || _body.Length < BodyLength + take)
        {
            // grow geometrically, but never past what the cap allows
            var size = Math.Min(Math.Max(BodyLength + take, Math.Max(BodyLength * 2, 1024)), Math.Max(cap, BodyLength + take));
            var bigger = BufferPool.Rent(size);
            if (_body is not null)
            {
                _body.AsSpan(0, BodyLength).CopyTo(bigger);
                BufferPool.Return(_body);
            }
            _body = bigger;
            _bodyCapacity = bigger.Length;
        }
        data[..take].CopyTo(_body.AsSpan(BodyLength));
        BodyLength += take;
    }

    /// <summary>An empty body takes a pooled array as it is (a gRPC message already cut to the
    /// cap): no copy. Otherwise the bytes are appended.</summary>
    internal void AdoptBody(byte[] pooled, int length, int cap)
    {
        if (_body is not null || BodyLength != 0 || IsLost || BodyHasGap || length > cap)
        {
            AppendBody(pooled.AsSpan(0, length), cap);
            BufferPool.Return(pooled);
            return;
        }
        BodyTotalBytes += length;
        _body = pooled;
        _bodyCapacity = pooled.Length;
        BodyLength = length;
    }

    internal void SkipBody(long bytes)
    {
        BodyTotalBytes += bytes;
        BodyHasGap = true;
    }

    /// <summary>The message cannot be kept: its buffers go back to the pool now; it stays a
    /// placeholder (method, status, times) so that pairing stays in order.</summary>
    internal void MarkLost(string reason)
    {
        LostReason ??= reason;
        if (_target is null && _head is not null && IsRequest) _target = HttpText.Decode(TargetBytes); // kept for logs and tests
        ReleaseBuffers();
    }

    /// <summary>Replaces the body with its decoded form; takes ownership of a pooled array.</summary>
    internal void ReplaceBodyDecoded(byte[] pooled, int length, string coding, bool cut)
    {
        if (_body is not null) BufferPool.Return(_body);
        _body = pooled;
        _bodyCapacity = pooled.Length;
        BodyLength = length;
        DecodedFrom = coding;
        DecodedTruncated = cut;
    }

    private void ReleaseBuffers(bool keepSmallHead = false)
    {
        if (_body is not null) BufferPool.Return(_body);
        _body = null;
        _bodyCapacity = 0;
        BodyLength = 0;
        if (_head is not null && !(keepSmallHead && _head.Length <= SmallHead)) BufferPool.Return(_head);
        if (!keepSmallHead || _head is { Length: > SmallHead })
        {
            _head = null;
            _headCapacity = 0;
        }
        _headLength = 0;
        _targetLength = _reasonLength = 0;
        _fieldCount = 0;
    }

    // ---- object pool: messages live from their first byte to the output, across threads ----

    // A pooled message keeps a header buffer of this size: most header blocks fit, and then a
    // message costs no buffer rent at all.
    private const int SmallHead = 1024;
    private const int MaxPooled = 4096;
    private static readonly ThreadCachedPool<HttpMessage> Pool = new(batch: 64, maxShared: MaxPooled);
    private bool _inPool;

    /// <summary>A clean message from the pool.</summary>
    internal static HttpMessage Rent()
    {
        if (Pool.TryRent() is { } m)
        {
            m._inPool = false;
            return m;
        }
        return new HttpMessage();
    }

    /// <summary>Returns the buffers and the object to their pools. The message must not be used after.</summary>
    public void Dispose()
    {
        if (_inPool) return;
        ReleaseBuffers(keepSmallHead: true);
        _isRequest = false;
        _method = _version = "";
        _status = 0;
        _target = _reason = _host = null;
        FirstByteNs = LastByteNs = 0;
        LostReason = null;
        Queued = false;
        BodyTotalBytes = 0;
        BodyTruncated = BodyHasGap = Incomplete = false;
        DecodedFrom = null;
        DecodedTruncated = DecodeAttempted = AlwaysBase64 = false;
        _inPool = true;
        if (Pool.Return(this)) return;
        if (_head is not null) BufferPool.Return(_head); // not pooled: its buffer goes back on its own
        _head = null;
        _headCapacity = 0;
    }

    public override string ToString() =>
        IsRequest ? $"{Method} {Target} {Version}{(IsLost ? $" (lost: {LostReason})" : "")}"
                  : $"{Version} {StatusCode} {Reason}{(IsLost ? $" (lost: {LostReason})" : "")}";
}

/// <summary>Byte-level text helpers for HTTP tokens and fields.</summary>
public static class HttpText
{
    /// <summary>Field values are bytes: UTF-8 when they are valid UTF-8 (what clients send today),
    /// else ISO-8859-1 (RFC 9110's obs-text), so that no byte is lost or replaced.</summary>
    public static string Decode(ReadOnlySpan<byte> bytes)
    {
        if (bytes.IsEmpty) return "";
        return System.Text.Unicode.Utf8.IsValid(bytes) ? Encoding.UTF8.GetString(bytes) : Encoding.Latin1.GetString(bytes);
    }

    public static byte Lower(byte c) => (uint)(c - 'A') <= 'Z' - 'A' ? (byte)(c | 0x20) : c;

    /// <summary>ASCII case-insensitive comparison with a lower-case literal.</summary>
    public static bool EqualsLower(ReadOnlySpan<byte> s, ReadOnlySpan<byte> lower)
    {
        if (s.Length != lower.Length) return false;
        for (var i = 0; i < s.Length; i++)
            if (Lower(s[i]) != lower[i]) return false;
        return true;
    }

    public static bool EqualsIgnoreCase(ReadOnlySpan<byte> a, ReadOnlySpan<byte> b)
    {
        if (a.Length != b.Length) return false;
        for (var i = 0; i < a.Length; i++)
            if (Lower(a[i]) != Lower(b[i])) return false;
        return true;
    }

    public static bool EqualsIgnoreCase(ReadOnlySpan<byte> a, string b)
    {
        if (a.Length != b.Length) return false;
        for (var i = 0; i < a.Length; i++)
        {
            var c = b[i];
            if (c > 0x7f || Lower(a[i]) != Lower((byte)c)) return false;
        }
        return true;
    }

    /// <summary>Whether a comma-separated list contains a token (ASCII case-insensitive).</summary>
    public static bool ListContains(ReadOnlySpan<byte> list, ReadOnlySpan<byte> lowerToken)
    {
        while (!list.IsEmpty)
        {
            var comma = list.IndexOf((byte)',');
            var item = Trim(comma < 0 ? list : list[..comma]);
            if (EqualsLower(item, lowerToken)) return true;
            if (comma < 0) break;
            list = list[(comma + 1)..];
        }
        return false;
    }

    /// <summary>The last element of a comma-separated list, trimmed.</summary>
    public static ReadOnlySpan<byte> LastListItem(ReadOnlySpan<byte> list)
    {
        var comma = list.LastIndexOf((byte)',');
        return Trim(comma < 0 ? list : list[(comma + 1)..]);
    }

    public static ReadOnlySpan<byte> Trim(ReadOnlySpan<byte> s)
    {
        int a = 0, b = s.Length;
        while (a < b && s[a] is (byte)' ' or (byte)'\t') a++;
        while (b > a && s[b - 1] is (byte)' ' or (byte)'\t') b--;
        return s[a..b];
    }
}

/// <summary>Host field values as strings, one per distinct value seen lately on this thread: the
/// filter, the host metric and collection_details read every request's host, and decoding it
/// each time made a string per exchange. A small table indexed by a hash of the bytes; a
/// collision replaces the entry. The strings are those HttpText.Decode makes.</summary>
internal static class HostStrings
{
    private const int MaxLength = 256;
    [ThreadStatic] private static (byte[] Bytes, string Text)[]? t_entries;

    public static string Get(ReadOnlySpan<byte> bytes)
    {
        if (bytes.IsEmpty || bytes.Length > MaxLength) return HttpText.Decode(bytes);
        var entries = t_entries ??= new (byte[], string)[64];
        var hash = (uint)bytes.Length ^ bytes[0] ^ ((uint)bytes[^1] << 8) ^ ((uint)bytes[bytes.Length / 2] << 16) ^ ((uint)bytes[bytes.Length / 3] << 24);
        ref var e = ref entries[(hash * 0x9E3779B1u) >> 26]; // the top 6 bits of a multiplicative hash: 0..63
        if (e.Bytes is not null && bytes.SequenceEqual(e.Bytes)) return e.Text;
        e = (bytes.ToArray(), HttpText.Decode(bytes));
        return e.Text;
    }
}
