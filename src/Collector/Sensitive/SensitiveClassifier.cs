using System.Buffers;
using System.Buffers.Binary;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using Collector.Connections;
using Collector.Http;
using Collector.Metrics;
using Collector.Output;

namespace Collector.Sensitive;

public enum SensitiveLocation : byte { RequestHeader, RequestQuery, RequestBody, ResponseHeader, ResponseBody }

/// <summary>A finding as the message and the metrics name it.</summary>
public readonly record struct Finding(int Category, SensitiveLocation Location, string Where);

public enum ClassifyOutcome : byte { Clean, Reported, Masked, Dropped }

/// <summary>The classify-and-mask step of the output: every value of the exchange (header values,
/// query parameters, JSON keys and values, form fields, text bodies: decoded bodies, up to the
/// body cap) through the built-in scanner and the policy's custom categories; findings counted
/// per category, location and endpoint template, listed in x-collector-sensitive, and masked in
/// place of the matched bytes only. One per event thread: its lists and buffers are reused, and
/// nothing is allocated for an exchange in which nothing is found.</summary>
public sealed class SensitiveClassifier : IKeyHintSource
{
    public static readonly string[] LocationLabels = ["request.header", "request.query", "request.body", "response.header", "response.body"];
    private const int MaxNoteEntries = 32;

    private readonly SensitiveMetrics _metrics;
    private readonly byte[]? _maskKey;
    private readonly List<ValueMatch> _matches = new();
    private readonly List<Finding> _findings = new();
    private readonly List<MaskSpan> _bodySpans = new(), _targetSpans = new(), _valueSpans = new();
    private readonly EndpointTemplates _templates = new();
    private readonly KeyStack _keys = new();
    private SensitivePolicy _policy = SensitivePolicy.Default;
    private int _untilTimed; // exchanges before the next one whose time is taken (the first is)
    private ulong _draw = 0x9E3779B97F4A7C15UL;
    private HttpExchange _x = null!;
    private bool _drop;
    private ulong _scopeKnown, _scopeIn; // per rule id below 64: endpoint scope decided / in scope
    private string? _endpoint;
    private byte[] _decoded = new byte[256];
    private readonly JsonCursor _cursor = new();
    private readonly ValueScanner.RegionMasks _headerMasks = new();
    private KeyedHash? _keyedHash;
    private readonly Counter?[] _outcomes = new Counter?[4];
    // the note's entries, (category, where) each once per side in the order found; the notes of
    // entries seen before are served again (a body of records has few combinations)
    private readonly List<(int Category, string Where, bool Request)> _entries = new();
    // remembered for one policy: a reloaded policy can give a custom category's id another name
    private readonly Dictionary<int, ((int Category, string Where, bool Request)[] Entries, string? Request, string? Response)> _notes = new();
    private SensitivePolicy? _notesPolicy;
    // the notes served last: the exchange after mostly has the same entries (a request id in each)
    private ((int Category, string Where, bool Request)[]? Entries, string? Request, string? Response) _lastNotes;
    private const int MaxRememberedNotes = 256;
    private int _requestEntries, _responseEntries;
    private readonly TwoWayTable<(SensitiveLocation Location, byte[]? Name, string? Where)> _namedWhere = new(1024);
    private readonly StringBuilder _note = new();
    private (string? Endpoint, Counter? Counter, int Pending)[] _counters = [];
    // the slots counted in this exchange: their counters are added to once, at its end
    private int[] _countedSlots = new int[16];
    private int _countedCount;
    private SensitivePolicy? _countersPolicy;

    /// <summary>maskKey: the HMAC key of keyed-hash masking (SENSITIVE_DATA_MASK_KEY); null: none set.</summary>
    public SensitiveClassifier(SensitiveMetrics metrics, byte[]? maskKey)
    {
        _metrics = metrics;
        _maskKey = maskKey;
    }

    /// <summary>A matched span of a value, and whether it stands for a whole JSON number (then its
    /// mask is digits, so the document stays valid and its shape the same).</summary>
    private readonly record struct MaskSpan(int Start, int Length, int Category, bool Number);

    /// <summary>The spans masked in the last body classified (the response's when it has one): tests.</summary>
    internal IReadOnlyList<(int Start, int Length)> LastBodySpans => _bodySpans.Select(s => (s.Start, s.Length)).ToArray();

    /// <summary>Exchanges whose time was taken, and those their times stand for (tests).</summary>
    internal long TimedExchanges, ExchangesTimesStandFor;

    /// <summary>The findings of the last exchange classified (tests, and the message's note).</summary>
    public IReadOnlyList<Finding> Findings => _findings;

    /// <summary>Classifies x under policy, filling parts with masks and the x-collector-sensitive
    /// notes. Dropped: the exchange must not be sent.</summary>
    public ClassifyOutcome Classify(HttpExchange x, MessageParts parts, SensitivePolicy policy, int bodyCap)
    {
        // the clock is read for some exchanges only, picked at random, each counted for itself
        // and those after it left untimed: two reads of it cost as much as a header block's scan
        var timed = _untilTimed-- == 0;
        var t0 = timed ? Stopwatch.GetTimestamp() : 0;
        _policy = policy;
        _x = x;
        _drop = false;
        _scopeKnown = _scopeIn = 0;
        _endpoint = null;
        _findings.Clear();
        _entries.Clear();
        _requestEntries = _responseEntries = 0;
        var masked = false;

        // the request was parsed before its response, and on a busy node other connections' bytes
        // came between: its lines are mostly out of the cache, the response's still in it. The
        // output asked for them (AktoMessage.Prefetch); they are read after the response, by then on their way.
        try
        {
            masked |= Headers(parts.Response, SensitiveLocation.ResponseHeader);
            masked |= Body(parts.Response, SensitiveLocation.ResponseBody, bodyCap);
            masked |= Headers(parts.Request, SensitiveLocation.RequestHeader);
            masked |= Query(parts);
            masked |= Body(parts.Request, SensitiveLocation.RequestBody, bodyCap);
        }
        finally
        {
            // an exchange that breaks off (the output counts it as an error) still counts what was
            // found, and leaves no sums behind for the next one, whose policy may be another
            AddCounts();
        }
        if (_findings.Count > 0)
        {
            // the same findings in the same places as the exchange before (a request id in every
            // request): its notes serve again
            var (request, response) = Notes();
            parts.Request.SensitiveNote = request;
            parts.Response.SensitiveNote = response;
        }
        var outcome = _drop ? ClassifyOutcome.Dropped : masked ? ClassifyOutcome.Masked : _findings.Count > 0 ? ClassifyOutcome.Reported : ClassifyOutcome.Clean;
        (_outcomes[(int)outcome] ??= _metrics.Exchanges[SensitiveMetrics.Results[(int)outcome]]).Increment();
        if (timed)
        {
            _draw = _draw * 6364136223846793005UL + 1442695040888963407UL;
            _untilTimed = (int)(_draw >> 60); // 0 to 15 untimed next (the high bits of the generator are its good ones)
            _metrics.ClassifyTicks.Add((Stopwatch.GetTimestamp() - t0) * (_untilTimed + 1));
            TimedExchanges++;
            ExchangesTimesStandFor += _untilTimed + 1;
        }
        return outcome;
    }

    // ---- where values are ----

    private bool Headers(SideParts side, SensitiveLocation location)
    {
        var m = side.Message;
        var count = m.HeaderCount;
        if (count == 0) return false;
        // the short values whose bytes hold no token a built-in could match are known from one
        // pass over the header block. Five dashes anywhere in it (a PEM line may start there),
        // and the value of an Authorization header, send the values to the scan as before.
        var fields = m.FieldBytes(count, out var fieldsAt);
        var byRegion = ValueScanner.RegionMasks.Accelerated && (_policy.BuiltInsOn & ValueScanner.AllBuiltIns) != 0 &&
                       _headerMasks.Load(fields) && !_headerMasks.FiveDashes;
        var any = false;
        for (var i = 0; i < count; i++)
        {
            var name = m.HeaderName(i);
            var kind = ValueKind.Text;
            // by length first: most names are none of these three
            switch (name.Length)
            {
                case 4 when HttpText.EqualsLower(name, "host"u8):
                    continue; // the endpoint itself, counted by its template
                case 13 when HttpText.EqualsLower(name, "authorization"u8):
                case 19 when HttpText.EqualsLower(name, "proxy-authorization"u8):
                    kind = ValueKind.Authorization;
                    break;
            }
            var value = m.HeaderValue(i);
            var builtIns = true;
            if (byRegion && kind == ValueKind.Text && value.Length is > 0 and < 64)
            {
                var offset = m.ValueStart(i) - fieldsAt;
                if (offset >= 0 && offset <= fields.Length - value.Length)
                {
                    // an HTTP date (Date, Last-Modified, Expires …) holds nothing, though its shape may
                    if (!_headerMasks.MayHoldMatch(offset, value.Length) || Validators.ImfFixdate(value)) builtIns = false;
                    else kind |= ValueKind.MayHold;
                }
            }
            if (!builtIns && _policy.Custom.Count == 0) continue;
            _valueSpans.Clear();
            Value(value, 0, name, kind, location, _valueSpans, WhereKind.Named, builtIns);
            if (_valueSpans.Count == 0) continue;
            var replaced = Replace(value, _valueSpans, out var length);
            side.Edits.Add(new HeaderEdit(i, replaced.AsSpan(0, length).ToArray(), WholeField: false));
            ArrayPool<byte>.Shared.Return(replaced);
            any = true;
        }
        return any;
    }

    private bool Query(MessageParts parts)
    {
        var target = _x.Request.TargetBytes;
        var q = target.IndexOf((byte)'?');
        if (q < 0) return false;
        _targetSpans.Clear();
        var hash = target.IndexOf((byte)'#');
        var end = hash > q ? hash : target.Length;
        Fields(target, q + 1, end, SensitiveLocation.RequestQuery, _targetSpans);
        if (_targetSpans.Count == 0) return false;
        var replaced = Replace(target, _targetSpans, out var length);
        parts.TargetOverride = replaced.AsSpan(0, length).ToArray();
        ArrayPool<byte>.Shared.Return(replaced);
        return true;
    }

    private bool Body(SideParts side, SensitiveLocation location, int bodyCap)
    {
        var m = side.Message;
        var body = m.Body;
        if (body.IsEmpty || m.AlwaysBase64) return false;
        var cut = m.BodyTruncated || m.BodyHasGap || m.Incomplete || m.DecodedTruncated || body.Length > bodyCap;
        if (body.Length > bodyCap) body = body[..bodyCap];
        _bodySpans.Clear();
        var type = m.FindHeader("content-type"u8) is var ct and >= 0 ? m.HeaderValue(ct) : default;
        if (BodyPlan.ContainsIgnoreCase(type, "json"u8) || (type.IsEmpty && body.TrimStart(" \r\n\t"u8) is [(byte)'{' or (byte)'[', ..]))
            Json(body, cut, location);
        else if (BodyPlan.ContainsIgnoreCase(type, "x-www-form-urlencoded"u8))
            Fields(body, 0, body.Length, location, _bodySpans);
        else if (type.IsEmpty || BodyPlan.ContainsIgnoreCase(type, "text/"u8) || BodyPlan.ContainsIgnoreCase(type, "xml"u8))
            Value(body, 0, default, ValueKind.Text, location, _bodySpans, WhereKind.Whole);
        if (_bodySpans.Count == 0) return false;
        var replaced = Replace(m.Body, _bodySpans, out var length);
        side.BodyOverride = replaced;
        side.BodyOverrideLength = length;
        return true;
    }

    /// <summary>name=value pairs separated by '&amp;' (a query string, a form body), each value
    /// percent-decoded before it is scanned and its matches mapped back to the encoded bytes.</summary>
    private void Fields(ReadOnlySpan<byte> s, int from, int end, SensitiveLocation location, List<MaskSpan> spans)
    {
        var p = from;
        while (p < end)
        {
            var amp = s[p..end].IndexOf((byte)'&');
            var fieldEnd = amp < 0 ? end : p + amp;
            var field = s[p..fieldEnd];
            var eq = field.IndexOf((byte)'=');
            if (eq > 0)
            {
                var name = field[..eq];
                var value = field[(eq + 1)..];
                var valueStart = p + eq + 1;
                if (value.IndexOfAny((byte)'%', (byte)'+') < 0)
                {
                    // (most parameters, page=2, hold nothing a built-in matches: not read unless a custom category may)
                    if (_policy.Custom.Count > 0 || !ValueScanner.TooShortToMatch(value))
                        Value(value, valueStart, name, ValueKind.Text, location, spans, WhereKind.Named);
                }
                else
                {
                    var decoded = PercentDecode(value);
                    var first = spans.Count;
                    Value(_decoded.AsSpan(0, decoded), 0, name, ValueKind.Text, location, spans, WhereKind.Named);
                    for (var k = first; k < spans.Count; k++)
                    {
                        var sp = spans[k];
                        var a = EncodedOffset(value, sp.Start);
                        var b = EncodedOffset(value, sp.Start + sp.Length);
                        spans[k] = sp with { Start = valueStart + a, Length = b - a };
                    }
                }
            }
            p = fieldEnd + 1;
        }
    }

    private int PercentDecode(ReadOnlySpan<byte> s)
    {
        if (_decoded.Length < s.Length) _decoded = new byte[Math.Max(s.Length, _decoded.Length * 2)];
        var n = 0;
        for (var i = 0; i < s.Length; i++)
        {
            var c = s[i];
            if (c == '+') c = (byte)' ';
            else if (c == '%' && i + 2 < s.Length && Validators.IsHex(s[i + 1]) && Validators.IsHex(s[i + 2]))
            {
                c = (byte)(HexValue(s[i + 1]) << 4 | HexValue(s[i + 2]));
                i += 2;
            }
            _decoded[n++] = c;
        }
        return n;
    }

    private static int HexValue(byte c) => Validators.IsDigit(c) ? c - '0' : (c | 0x20) - 'a' + 10;

    /// <summary>The offset in the encoded bytes of the decoded byte at index decoded.</summary>
    private static int EncodedOffset(ReadOnlySpan<byte> encoded, int decoded)
    {
        var i = 0;
        for (var d = 0; d < decoded && i < encoded.Length; d++)
            i += encoded[i] == '%' && i + 2 < encoded.Length && Validators.IsHex(encoded[i + 1]) && Validators.IsHex(encoded[i + 2]) ? 3 : 1;
        return i;
    }

    /// <summary>A JSON body. The built-ins scan the whole body in one pass (strings, keys and
    /// numbers alike; escapes stepped over), and a token whose category depends on its key asks
    /// for the key in front of it (<see cref="HintAt"/>); only a match is then placed in the
    /// document, by a cursor that walks the structure up to it (key or value, and its path).
    /// Custom categories, which look at every value and key by name, walk the document.</summary>
    private void Json(ReadOnlySpan<byte> body, bool cut, SensitiveLocation location)
    {
        _matches.Clear();
        ValueScanner.Scan(body, KeyHint.None, ValueKind.JsonEscaped, _policy.BuiltInsOn, _matches, this);
        if (_matches.Count > 0)
        {
            if (!InOrder(_matches)) _matches.Sort((a, b) => a.Start.CompareTo(b.Start));
            _cursor.Reset();
            var prefix = LocationLabels[(int)location];
            foreach (var m in _matches)
            {
                _cursor.AdvanceTo(body, m.Start);
                // outside a string a match is a whole number (the scanner matches no sign, fraction
                // or exponent): its mask is digits, so the document keeps its types
                var number = !_cursor.InString && body.Slice(m.Start, m.Length).IndexOfAnyExceptInRange((byte)'0', (byte)'9') < 0;
                Found((int)m.Category, body, m.Start, m.Length, 0, location, _bodySpans, number, _cursor, prefix);
            }
        }
        if (_policy.Custom.Count > 0) CustomJson(body, cut, location);
    }

    private static bool InOrder(List<ValueMatch> matches)
    {
        // the scan finds matches front to back, but puts a private key's (and a bearer token's) first
        var span = CollectionsMarshal.AsSpan(matches);
        for (var i = 1; i < span.Length; i++)
            if (span[i].Start < span[i - 1].Start) return false;
        return true;
    }

    /// <summary>The key in front of the token at offset of a JSON body ("ssn":"536904399",
    /// "phone": 4155552671): its hint, or none when the token is not the start of a value.</summary>
    public KeyHint HintAt(ReadOnlySpan<byte> body, int offset)
    {
        var p = offset - 1;
        if (p >= 0 && body[p] == '"') p--;
        while (p >= 0 && body[p] is (byte)' ' or (byte)'\t' or (byte)'\r' or (byte)'\n') p--;
        if (p < 0 || body[p] != ':') return KeyHint.None;
        p--;
        while (p >= 0 && body[p] is (byte)' ' or (byte)'\t' or (byte)'\r' or (byte)'\n') p--;
        if (p < 1 || body[p] != '"') return KeyHint.None;
        var keyEnd = p;
        var from = Math.Max(0, keyEnd - 65);
        var open = body[from..keyEnd].LastIndexOf((byte)'"');
        return open < 0 ? KeyHint.None : KeyHints.Of(body[(from + open + 1)..keyEnd]);
    }

    /// <summary>Custom categories over a JSON body: keys and values apart, each value with its
    /// key. A body that is not JSON from its first byte is read as text; one that breaks later
    /// keeps what was found before the break (the rest cannot be walked).</summary>
    private void CustomJson(ReadOnlySpan<byte> body, bool cut, SensitiveLocation location)
    {
        var reader = new Utf8JsonReader(body, isFinalBlock: !cut, new JsonReaderState(new JsonReaderOptions
        {
            CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true, MaxDepth = KeyStack.MaxDepth,
        }));
        _keys.Reset();
        try
        {
            while (reader.Read())
            {
                switch (reader.TokenType)
                {
                    case JsonTokenType.StartObject:
                    case JsonTokenType.StartArray:
                        _keys.Push();
                        break;
                    case JsonTokenType.EndObject:
                    case JsonTokenType.EndArray:
                        _keys.Pop();
                        break;
                    case JsonTokenType.PropertyName:
                    {
                        var start = (int)reader.TokenStartIndex + 1;
                        var key = body.Slice(start, reader.ValueSpan.Length);
                        _keys.SetKey(start, key.Length, KeyHint.None);
                        Custom(key, start, key, location, _bodySpans, WhereKind.JsonKey, ValueKind.JsonEscaped);
                        break;
                    }
                    case JsonTokenType.String:
                    {
                        var start = (int)reader.TokenStartIndex + 1;
                        Custom(body.Slice(start, reader.ValueSpan.Length), start, default, location, _bodySpans, WhereKind.JsonValue, ValueKind.JsonEscaped);
                        break;
                    }
                    case JsonTokenType.Number:
                    {
                        var start = (int)reader.TokenStartIndex;
                        Custom(body.Slice(start, reader.ValueSpan.Length), start, default, location, _bodySpans, WhereKind.JsonValue, ValueKind.JsonNumber);
                        break;
                    }
                }
            }
        }
        catch (JsonException) when (reader.BytesConsumed == 0)
        {
            // declared JSON that is not: read as text
            Custom(body, 0, default, location, _bodySpans, WhereKind.Whole, ValueKind.Text);
        }
        catch (JsonException)
        {
            // broken after its start: the findings before the break stand; the rest cannot be walked
        }
    }

    // ---- one value ----

    private enum WhereKind : byte { Named, Whole, JsonKey, JsonValue }

    /// <summary>One value under its name (whose hint the scanner works out only if a token needs it).</summary>
    private void Value(ReadOnlySpan<byte> value, int offset, ReadOnlySpan<byte> name, ValueKind kind,
        SensitiveLocation location, List<MaskSpan> spans, WhereKind where, bool builtIns = true)
    {
        var policy = _policy;
        if (builtIns)
        {
            _matches.Clear();
            ValueScanner.Scan(value, KeyHint.None, kind, policy.BuiltInsOn, _matches, name: name);
            foreach (var match in _matches)
                Found((int)match.Category, value, match.Start, match.Length, offset, location, spans, (kind & ValueKind.JsonNumber) != 0,
                    null, Where(location, name, where));
        }
        if (policy.Custom.Count > 0) Custom(value, offset, name, location, spans, where, kind);
    }

    private void Custom(ReadOnlySpan<byte> value, int offset, ReadOnlySpan<byte> name, SensitiveLocation location,
        List<MaskSpan> spans, WhereKind where, ValueKind kind)
    {
        var keyName = where == WhereKind.JsonValue ? _keys.Current(_xBody(location)) : name;
        string? nameText = null;
        string? valueText = null;
        foreach (var rule in _policy.Custom)
        {
            if (rule.Keys is not null)
            {
                if (keyName.IsEmpty) continue;
                nameText ??= Encoding.UTF8.GetString(keyName);
                if (!rule.Keys.IsMatch(nameText)) continue;
                if (rule.Values is null)
                {
                    if (where != WhereKind.JsonKey)
                        Found(rule.Id, value, 0, value.Length, offset, location, spans, (kind & ValueKind.JsonNumber) != 0, null, Where(location, name, where));
                    continue;
                }
            }
            if (rule.Values is null) continue;
            valueText ??= Encoding.UTF8.GetString(value);
            foreach (var m in rule.Values.EnumerateMatches(valueText))
            {
                if (m.Length == 0) continue;
                var start = Encoding.UTF8.GetByteCount(valueText.AsSpan(0, m.Index));
                var length = Encoding.UTF8.GetByteCount(valueText.AsSpan(m.Index, m.Length));
                Found(rule.Id, value, start, length, offset, location, spans, (kind & ValueKind.JsonNumber) != 0, null, Where(location, name, where));
            }
        }
    }

    private ReadOnlySpan<byte> _xBody(SensitiveLocation location) =>
        location == SensitiveLocation.RequestBody ? _x.Request.Body : _x.Response.Body;

    /// <summary>A match of category id: in scope and not excepted, it is recorded, counted and
    /// acted on. where: its place, or (cursor, prefix) to work it out in a JSON body.</summary>
    private void Found(int id, ReadOnlySpan<byte> value, int start, int length, int offset, SensitiveLocation location,
        List<MaskSpan> spans, bool number, JsonCursor? cursor, string where)
    {
        var rule = _policy.ById[id];
        if (rule is null) return;
        if (rule.Except.Count > 0 && rule.IsExcepted(Encoding.UTF8.GetString(value.Slice(start, length)))) return;
        if (rule.Endpoints.Count > 0 && !InScope(rule)) return;
        Count(id, rule.Name, location);
        if (_findings.Count < 256)
        {
            var finding = new Finding(id, location, cursor is null ? where : cursor.Path(where, value, start));
            _findings.Add(finding);
            NoteEntry(finding);
        }
        switch (rule.Action)
        {
            case SensitiveAction.Mask:
                spans.Add(new MaskSpan(offset + start, length, id, number));
                break;
            case SensitiveAction.Drop:
                _drop = true;
                break;
        }
    }

    /// <summary>One more finding on the series of (category, location, endpoint template); the
    /// series' counter is remembered per category and location while the endpoint stays. The
    /// findings are summed per series and added at the exchange's end (<see cref="AddCounts"/>):
    /// a body of records finds the same few series a hundred times.</summary>
    private void Count(int id, string name, SensitiveLocation location)
    {
        _endpoint ??= _templates.Of(_x.Request);
        if (!ReferenceEquals(_countersPolicy, _policy))
        {
            _counters = new (string?, Counter?, int)[_policy.ById.Length * LocationLabels.Length];
            _countersPolicy = _policy;
        }
        var index = id * LocationLabels.Length + (int)location;
        ref var slot = ref _counters[index];
        if (!ReferenceEquals(slot.Endpoint, _endpoint))
            slot = (_endpoint, _metrics.Findings(name, LocationLabels[(int)location], _endpoint), 0);
        if (slot.Pending++ == 0)
        {
            if (_countedCount == _countedSlots.Length) Array.Resize(ref _countedSlots, _countedCount * 2);
            _countedSlots[_countedCount++] = index;
        }
    }

    private void AddCounts()
    {
        for (var i = 0; i < _countedCount; i++)
        {
            ref var slot = ref _counters[_countedSlots[i]];
            slot.Counter!.Add(slot.Pending);
            slot.Pending = 0;
        }
        _countedCount = 0;
    }

    private bool InScope(CategoryRule rule)
    {
        if (rule.Id < 64 && (_scopeKnown & (1UL << rule.Id)) != 0) return (_scopeIn & (1UL << rule.Id)) != 0;
        var host = EndpointTemplates.HostWithoutPort(_x.Request.Header("host") ?? "");
        var target = _x.Request.Target;
        var q = target.IndexOfAny(['?', '#']);
        var path = q < 0 ? target.AsSpan() : target.AsSpan(0, q);
        var inScope = false;
        foreach (var g in rule.Endpoints)
            if (g.Matches(host, path))
            {
                inScope = true;
                break;
            }
        if (rule.Id < 64)
        {
            _scopeKnown |= 1UL << rule.Id;
            if (inScope) _scopeIn |= 1UL << rule.Id;
        }
        return inScope;
    }

    private string Where(SensitiveLocation location, ReadOnlySpan<byte> name, WhereKind where)
    {
        var prefix = LocationLabels[(int)location];
        return where switch
        {
            WhereKind.Named => NamedWhere(location, name),
            WhereKind.JsonValue => _keys.Path(prefix, _xBody(location), key: false),
            WhereKind.JsonKey => _keys.Path(prefix, _xBody(location), key: true),
            _ => prefix,
        };
    }

    /// <summary>prefix.name (lower case) of a header, field or parameter: made once per name, and
    /// found again in a <see cref="TwoWayTable{T}"/> by a hash of the name's letters folded to one case.</summary>
    private string NamedWhere(SensitiveLocation location, ReadOnlySpan<byte> name)
    {
        // (the first 64 letters: a longer name is told apart by its length and by the compare)
        Span<byte> key = stackalloc byte[64];
        key = key[..Math.Min(name.Length, 64)];
        for (var i = 0; i < key.Length; i++) key[i] = (byte)(name[i] | 0x20);
        var set = _namedWhere.SetOf(TwoWayTable.Hash(key, (ulong)location << 32 | (uint)name.Length));
        for (var way = 0; way < 2; way++)
        {
            ref var slot = ref _namedWhere.Way(set, way);
            if (slot.Where is not null && slot.Location == location && HttpText.EqualsIgnoreCase(slot.Name, name))
            {
                _namedWhere.Used(set, way);
                return slot.Where;
            }
        }
        var where = LocationLabels[(int)location] + "." + HttpText.Decode(name).ToLowerInvariant();
        _namedWhere.Add(set, (location, name.ToArray(), where));
        return where;
    }

    /// <summary>finding's (category, where) on the note of its side, unless it is there already
    /// or the side has its most.</summary>
    private void NoteEntry(Finding f)
    {
        var request = f.Location is SensitiveLocation.RequestHeader or SensitiveLocation.RequestQuery or SensitiveLocation.RequestBody;
        ref var count = ref request ? ref _requestEntries : ref _responseEntries;
        if (count == MaxNoteEntries) return;
        // a linear look over at most twice MaxNoteEntries
        var entry = (f.Category, f.Where, request);
        foreach (var e in CollectionsMarshal.AsSpan(_entries))
            if (SameEntry(e, entry)) return;
        _entries.Add(entry);
        count++;
    }

    /// <summary>The notes of this exchange's entries: made once per combination of entries.</summary>
    private (string? Request, string? Response) Notes()
    {
        var entries = CollectionsMarshal.AsSpan(_entries);
        if (_lastNotes.Entries is { } last && ReferenceEquals(_notesPolicy, _policy) && Same(last, entries)) return (_lastNotes.Request, _lastNotes.Response);
        var h = new HashCode();
        foreach (var e in entries) h.Add((e.Category, e.Request, e.Where.Length, e.Where.Length > 0 ? e.Where[^1] : '\0'));
        var hash = h.ToHashCode();
        if (!ReferenceEquals(_notesPolicy, _policy))
        {
            _notes.Clear();
            _notesPolicy = _policy;
            _lastNotes = default;
        }
        if (_notes.TryGetValue(hash, out var known) && Same(known.Entries, entries))
        {
            _lastNotes = known;
            return (known.Request, known.Response);
        }
        var made = (_entries.ToArray(), Note(isRequest: true), Note(isRequest: false));
        if (_notes.Count >= MaxRememberedNotes) _notes.Clear();
        _notes[hash] = _lastNotes = made;
        return (made.Item2, made.Item3);
    }

    private static bool Same(ReadOnlySpan<(int Category, string Where, bool Request)> a, ReadOnlySpan<(int Category, string Where, bool Request)> b)
    {
        if (a.Length != b.Length) return false;
        for (var i = 0; i < a.Length; i++)
            if (!SameEntry(a[i], b[i])) return false;
        return true;
    }

    // places are mostly the same string objects (paths and names are made once): by reference first
    private static bool SameEntry((int Category, string Where, bool Request) a, (int Category, string Where, bool Request) b) =>
        a.Category == b.Category && a.Request == b.Request && (ReferenceEquals(a.Where, b.Where) || a.Where == b.Where);

    /// <summary>CATEGORY@where for one side, in the order found, each once.</summary>
    private string? Note(bool isRequest)
    {
        var sb = _note.Clear();
        foreach (var e in _entries)
        {
            if (e.Request != isRequest) continue;
            if (sb.Length > 0) sb.Append(", ");
            sb.Append(_policy.NameOf(e.Category)).Append('@').Append(e.Where);
        }
        return sb.Length == 0 ? null : sb.ToString();
    }

    // ---- masking ----

    /// <summary>source with every span replaced by its mask, in a pooled buffer (length out).
    /// Spans that overlap are merged into one: the bytes between matches are copied as they are.</summary>
    private byte[] Replace(ReadOnlySpan<byte> source, List<MaskSpan> spans, out int length)
    {
        // (a body's matches come front to back: sorted already, but for a header's or a custom category's)
        if (!Ordered(CollectionsMarshal.AsSpan(spans)))
            spans.Sort((a, b) => a.Start != b.Start ? a.Start.CompareTo(b.Start) : b.Length.CompareTo(a.Length));
        var output = ArrayPool<byte>.Shared.Rent(source.Length + spans.Count * (MaskMaxBytes + 8) + 16);
        var o = 0;
        var p = 0;
        foreach (var sp in spans)
        {
            if (sp.Start < p) continue; // inside a span already masked
            source[p..sp.Start].CopyTo(output.AsSpan(o));
            o += sp.Start - p;
            o += Mask(source.Slice(sp.Start, sp.Length), sp.Category, sp.Number, output.AsSpan(o));
            p = sp.Start + sp.Length;
        }
        source[p..].CopyTo(output.AsSpan(o));
        length = o + source.Length - p;
        return output;
    }

    private static bool Ordered(ReadOnlySpan<MaskSpan> spans)
    {
        for (var i = 1; i < spans.Length; i++)
            if (spans[i].Start < spans[i - 1].Start || (spans[i].Start == spans[i - 1].Start && spans[i].Length > spans[i - 1].Length))
                return false;
        return true;
    }

    private const int MaskMaxBytes = 96;

    /// <summary>The mask of value into dest: [CATEGORY:16 hex digits of HMAC-SHA256] (equal values
    /// give equal masks: they stay joinable, and without the key cannot be reversed), or the
    /// fixed text. A whole JSON number is masked with digits of the same length, so the document
    /// keeps its types and stays valid.</summary>
    [SkipLocalsInit]
    private int Mask(ReadOnlySpan<byte> value, int category, bool number, Span<byte> dest)
    {
        Span<byte> mac = stackalloc byte[32];
        var keyed = _policy.MaskStyle == MaskStyle.Hmac && _maskKey is not null;
        if (keyed)
        {
            _keyedHash ??= new KeyedHash(_maskKey!);
            _keyedHash.Compute(value, mac);
        }
        if (number)
        {
            for (var i = 0; i < value.Length; i++)
                dest[i] = keyed ? (byte)('0' + mac[i % 32] % 10) : (byte)'9';
            if (dest[0] == '0') dest[0] = (byte)'1'; // a JSON number has no leading zero
            return value.Length;
        }
        var text = MaskText(category, keyed);
        text.CopyTo(dest);
        if (!keyed) return text.Length;
        var n = text.Length;
        for (var i = 0; i < 8; i++, n += 2) BinaryPrimitives.WriteUInt16LittleEndian(dest[n..], HexPairs[mac[i]]);
        dest[n++] = (byte)']';
        return n;
    }

    /// <summary>The fixed mask, or "[CATEGORY:" in front of a keyed one, in bytes: made once per
    /// category of a policy.</summary>
    private byte[] MaskText(int category, bool keyed)
    {
        if (!ReferenceEquals(_maskTextsPolicy, _policy))
        {
            _maskTexts = new byte[]?[_policy.ById.Length + 1];
            _maskTextsPolicy = _policy;
        }
        var slot = keyed ? category : _maskTexts.Length - 1;
        if (_maskTexts[slot] is { } made) return made;
        var name = _policy.NameOf(category);
        var chars = keyed ? "[" + name[..Math.Min(name.Length, 64)] + ":" : _policy.FixedMask;
        // one byte per character, as the masks have always been written
        var bytes = new byte[chars.Length];
        for (var i = 0; i < chars.Length; i++) bytes[i] = (byte)chars[i];
        return _maskTexts[slot] = bytes;
    }

    private byte[]?[] _maskTexts = [];
    private SensitivePolicy? _maskTextsPolicy;

    // the two lower-case hex digits of a byte, the first in the low byte (written little-endian)
    private static readonly ushort[] HexPairs = Enumerable.Range(0, 256)
        .Select(b => (ushort)("0123456789abcdef"[b >> 4] | "0123456789abcdef"[b & 0xF] << 8)).ToArray();

    /// <summary>The keys of the JSON document from the root to where the reader is: offsets into
    /// the body, so that a path string is made only for a finding.</summary>
    private sealed class KeyStack
    {
        public const int MaxDepth = 64;
        private readonly (int Start, int Length, KeyHint Hint)[] _levels = new (int, int, KeyHint)[MaxDepth + 1];
        private int _depth;

        public void Reset() => _depth = 0;

        public void Push()
        {
            // an array's elements are under the array's key: its hint and name carry down
            _levels[_depth] = (-1, 0, _depth > 0 ? _levels[_depth - 1].Hint : KeyHint.None);
            _depth++;
        }

        public void Pop()
        {
            if (_depth > 0) _depth--;
        }

        public void SetKey(int start, int length, KeyHint hint)
        {
            // a key's hint adds to its parents' ({"card": {"number": …}} is a card number)
            if (_depth > 0) _levels[_depth - 1] = (start, length, hint | (_depth > 1 ? _levels[_depth - 2].Hint : KeyHint.None));
        }

        public KeyHint Hint => _depth > 0 ? _levels[_depth - 1].Hint : KeyHint.None;

        public ReadOnlySpan<byte> Current(ReadOnlySpan<byte> body)
        {
            for (var d = _depth - 1; d >= 0; d--)
                if (_levels[d].Start >= 0) return body.Slice(_levels[d].Start, _levels[d].Length);
            return default;
        }

        /// <summary>prefix.key.key… (and "#key" for a match in a key), spelled in bytes and its
        /// string made once per spelling, as <see cref="JsonCursor.Path"/> makes the built-ins'.</summary>
        public string Path(string prefix, ReadOnlySpan<byte> body, bool key)
        {
            _paths.Start();
            _paths.Append(prefix);
            for (var d = 0; d < _depth; d++)
            {
                if (_levels[d].Start < 0) continue;
                _paths.Append((byte)'.');
                _paths.Append(body.Slice(_levels[d].Start, _levels[d].Length));
            }
            if (key) _paths.Append("#key"u8);
            return _paths.Spelled();
        }

        private readonly SpelledStrings _paths = new(1024);
    }
}
