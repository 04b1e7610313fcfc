using System.Buffers;
using System.Buffers.Text;
using System.Text;

namespace Collector.Http;

/// <summary>What a stream parser reports to its connection.</summary>
public interface IHttpMessageSink
{
    /// <summary>Method of the oldest request still waiting for its response (null when unknown):
    /// a response's framing depends on it (HEAD, CONNECT).</summary>
    string? PendingRequestMethod { get; }
    void OnMessage(HttpStreamParser from, HttpMessage message);
    /// <summary>A 1xx response other than 101: not the answer yet.</summary>
    void OnInterim(HttpStreamParser from, HttpMessage message);
    void OnMalformed(HttpStreamParser from, string reason);
}

public enum StreamRole { Unknown, Requests, Responses }

public sealed record HttpLimits(int MaxHeaderBytes = 64 * 1024, int MaxBodyBytes = 256 * 1024);

/// <summary>Incremental HTTP/1.x parser for one direction of one connection, in the shape of
/// Kestrel's: a SequenceReader over the pipe's buffer, explicit states, and consumed/examined
/// positions so that an incomplete line waits for more bytes without being copied.</summary>
public sealed class HttpStreamParser
{
    private enum State
    {
        StartLine,
        Headers,
        BodyFixed,
        ChunkSize,
        ChunkData,
        ChunkDataEnd,
        Trailers,
        BodyUntilClose,
        AwaitUpgrade, // a CONNECT or Upgrade request: what follows depends on the response
        Resync,       // after malformed input or a gap: looking for the next start line
        Opaque,       // after 101 or CONNECT: not HTTP any more
    }

    private const int MaxChunkLine = 4096;

    private readonly HttpLimits _limits;
    private State _state = State.StartLine;
    private HttpMessage? _current;
    private long _remaining;
    private int _headerBytes;

    public HttpStreamParser(HttpLimits limits) => _limits = limits;

    public StreamRole Role { get; set; }

    /// <summary>Kernel time of the event holding the next message's first byte.</summary>
    public ulong NextMessageStartNs { get; set; }

    /// <summary>Between messages with nothing pending: a new byte starts a new message.</summary>
    public bool AtMessageBoundary => _state == State.StartLine;

    public bool IsOpaque => _state == State.Opaque;

    /// <summary>A message is in progress (headers or body seen, not finished).</summary>
    public bool InMessage => _current is not null;

    /// <summary>Bytes held by the message in progress (its body), for the memory budget.</summary>
    public int RetainedBytes => _current?.RetainedBytes ?? 0;

    /// <summary>Parses as much of buffer as forms whole lines or body bytes.</summary>
    public void Parse(in ReadOnlySequence<byte> buffer, ulong eventNs, IHttpMessageSink sink,
        out SequencePosition consumed, out SequencePosition examined)
    {
        var reader = new SequenceReader<byte>(buffer);
        examined = buffer.End;
        while (true)
        {
            switch (_state)
            {
                case State.StartLine:
                case State.Resync:
                {
                    if (reader.End) goto Done;
                    if (!reader.TryReadTo(out ReadOnlySequence<byte> line, (byte)'\n'))
                    {
                        if (reader.Remaining > _limits.MaxHeaderBytes)
                        {
                            if (_state == State.StartLine) sink.OnMalformed(this, "start line too long");
                            _state = State.Resync;
                            reader.AdvanceToEnd();
                        }
                        goto Done;
                    }
                    if (IsBlank(line)) continue; // blank lines between messages are tolerated
                    var resyncing = _state == State.Resync;
                    if (!TryStartMessage(line, sink))
                    {
                        if (!resyncing)
                        {
                            sink.OnMalformed(this, "invalid start line");
                            _state = State.Resync;
                        }
                        continue;
                    }
                    _current!.FirstByteNs = NextMessageStartNs != 0 ? NextMessageStartNs : eventNs;
                    _headerBytes = (int)line.Length + 1;
                    _state = State.Headers;
                    continue;
                }
                case State.Headers:
                case State.Trailers:
                {
                    if (!reader.TryReadTo(out ReadOnlySequence<byte> line, (byte)'\n'))
                    {
                        if (_headerBytes + reader.Remaining > _limits.MaxHeaderBytes)
                        {
                            Abandon(sink, "header block too large");
                            reader.AdvanceToEnd();
                        }
                        goto Done;
                    }
                    _headerBytes += (int)line.Length + 1;
                    if (_headerBytes > _limits.MaxHeaderBytes)
                    {
                        Abandon(sink, "header block too large");
                        continue;
                    }
                    if (IsBlank(line))
                    {
                        if (_state == State.Trailers) Complete(eventNs, sink);
                        else BeginBody(eventNs, sink);
                        continue;
                    }
                    if (!TryAddHeader(line))
                    {
                        Abandon(sink, "invalid header line");
                        continue;
                    }
                    continue;
                }
                case State.BodyFixed:
                case State.ChunkData:
                {
                    if (reader.End) goto Done;
                    var take = Math.Min(_remaining, reader.Remaining);
                    _current!.AppendBody(reader.UnreadSequence.Slice(0, take), _limits.MaxBodyBytes);
                    reader.Advance(take);
                    _remaining -= take;
                    if (_remaining > 0) goto Done;
                    if (_state == State.BodyFixed) Complete(eventNs, sink);
                    else _state = State.ChunkDataEnd;
                    continue;
                }
                case State.ChunkDataEnd:
                {
                    if (!reader.TryReadTo(out ReadOnlySequence<byte> line, (byte)'\n'))
                    {
                        if (reader.Remaining > 2) Abandon(sink, "chunk not followed by CRLF");
                        goto Done;
                    }
                    if (!IsBlank(line)) { Abandon(sink, "chunk not followed by CRLF"); continue; }
                    _state = State.ChunkSize;
                    continue;
                }
                case State.ChunkSize:
                {
                    if (!reader.TryReadTo(out ReadOnlySequence<byte> line, (byte)'\n'))
                    {
                        if (reader.Remaining > MaxChunkLine) Abandon(sink, "chunk size line too long");
                        goto Done;
                    }
                    if (!TryParseChunkSize(line, out var size)) { Abandon(sink, "invalid chunk size"); continue; }
                    if (size == 0) { _state = State.Trailers; continue; }
                    _remaining = size;
                    _state = State.ChunkData;
                    continue;
                }
                case State.BodyUntilClose:
                {
                    if (reader.End) goto Done;
                    _current!.AppendBody(reader.UnreadSequence, _limits.MaxBodyBytes);
                    reader.AdvanceToEnd();
                    goto Done;
                }
                case State.AwaitUpgrade:
                    goto Done; // keep the bytes until the response says what they are
                case State.Opaque:
                    reader.AdvanceToEnd();
                    goto Done;
            }
        }
    Done:
        consumed = reader.Position;
    }

    /// <summary>bytes are missing from this direction. Inside a body of known length the parser
    /// stays in step (the hole is marked); elsewhere the message is lost and parsing resumes at
    /// the next start line it finds. Returns true when the message in progress survives.</summary>
    public bool OnGap(long bytes, IHttpMessageSink sink)
    {
        switch (_state)
        {
            case State.BodyFixed or State.ChunkData when bytes <= _remaining:
                _current!.SkipBody(bytes);
                _remaining -= bytes;
                if (_remaining == 0 && _state == State.ChunkData) _state = State.ChunkDataEnd;
                else if (_remaining == 0) { _state = State.BodyFixed; _remaining = 0; }
                return true;
            case State.BodyUntilClose:
                _current!.SkipBody(bytes);
                return true;
            case State.Opaque:
                return true;
            case State.StartLine:
            case State.Resync:
                _state = State.Resync;
                return false;
            default:
                Abandon(sink, null);
                return false;
        }
    }

    /// <summary>Called when a gap leaves a fixed body complete: emits it (marked as holed).</summary>
    public void CompleteIfBodyDone(ulong eventNs, IHttpMessageSink sink)
    {
        if (_state == State.BodyFixed && _remaining == 0 && _current is not null)
            Complete(eventNs, sink);
    }

    /// <summary>The connection ended: a close-delimited body is complete; anything else in
    /// progress is incomplete and handed on marked as such.</summary>
    public void OnClose(ulong eventNs, IHttpMessageSink sink)
    {
        if (_current is null) return;
        if (_state != State.BodyUntilClose) _current.Incomplete = true;
        Complete(eventNs, sink);
    }

    /// <summary>The response to a CONNECT or Upgrade request was not a switch: carry on parsing.</summary>
    public void ResumeAfterUpgrade()
    {
        if (_state == State.AwaitUpgrade) _state = State.StartLine;
    }

    public void BecomeOpaque()
    {
        _current?.Dispose();
        _current = null;
        _state = State.Opaque;
    }

    /// <summary>Drops the message in progress (memory shed or a gap) and looks for the next start line.</summary>
    public void Reset()
    {
        _current?.Dispose();
        _current = null;
        if (_state != State.Opaque) _state = State.Resync;
    }

    private void Abandon(IHttpMessageSink sink, string? reason)
    {
        if (reason is not null) sink.OnMalformed(this, reason);
        _current?.Dispose();
        _current = null;
        _state = State.Resync;
    }

    private void Complete(ulong eventNs, IHttpMessageSink sink)
    {
        var m = _current!;
        _current = null;
        m.LastByteNs = eventNs;
        NextMessageStartNs = eventNs;
        _state = State.StartLine;
        if (!m.IsRequest && m.StatusCode is >= 100 and < 200 && m.StatusCode != 101)
        {
            sink.OnInterim(this, m);
            return;
        }
        if (m.IsRequest && (m.Method == "CONNECT" || IsUpgradeRequest(m)))
            _state = State.AwaitUpgrade;
        sink.OnMessage(this, m);
    }

    private void BeginBody(ulong eventNs, IHttpMessageSink sink)
    {
        var m = _current!;
        if (!m.IsRequest)
        {
            var method = sink.PendingRequestMethod;
            if (m.StatusCode == 101 || (method == "CONNECT" && m.StatusCode is >= 200 and < 300))
            {
                Complete(eventNs, sink);
                _state = State.Opaque;
                return;
            }
            if (m.StatusCode is >= 100 and < 200 || m.StatusCode is 204 or 304 || method == "HEAD")
            {
                Complete(eventNs, sink);
                return;
            }
        }
        var te = m.Header("transfer-encoding");
        if (te is not null)
        {
            // chunked must be the final coding; any other coding on a response runs to close
            if (te.TrimEnd().EndsWith("chunked", StringComparison.OrdinalIgnoreCase)) { _state = State.ChunkSize; return; }
            if (m.IsRequest) { Abandon(sink, "request transfer-encoding without chunked"); return; }
            _state = State.BodyUntilClose;
            return;
        }
        var cl = m.Header("content-length");
        if (cl is not null)
        {
            if (!TryParseContentLength(cl, out var length)) { Abandon(sink, "invalid content-length"); return; }
            if (length == 0) { Complete(eventNs, sink); return; }
            _remaining = length;
            _state = State.BodyFixed;
            return;
        }
        if (m.IsRequest) { Complete(eventNs, sink); return; }
        _state = State.BodyUntilClose;
    }

    private static bool IsUpgradeRequest(HttpMessage m) =>
        m.Header("upgrade") is not null &&
        (m.Header("connection")?.Contains("upgrade", StringComparison.OrdinalIgnoreCase) ?? false);

    private bool TryStartMessage(in ReadOnlySequence<byte> lineSeq, IHttpMessageSink sink)
    {
        if (lineSeq.Length > _limits.MaxHeaderBytes) return false;
        Span<byte> stack = stackalloc byte[512];
        var line = Flatten(lineSeq, stack, out var rented);
        try
        {
            line = TrimCr(line);
            if (line.StartsWith("HTTP/"u8))
            {
                if (Role == StreamRole.Requests) return false;
                // HTTP/1.x SP 3DIGIT [SP reason]
                if (line.Length < 12 || !IsVersion(line[..8]) || line[8] != (byte)' ' ||
                    !IsDigit(line[9]) || !IsDigit(line[10]) || !IsDigit(line[11]) ||
                    (line.Length > 12 && line[12] != (byte)' '))
                    return false;
                var status = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
                _current = new HttpMessage
                {
                    IsRequest = false,
                    Version = HttpStrings.Version(line[..8]),
                    StatusCode = status,
                    Reason = line.Length > 13 ? Encoding.Latin1.GetString(line[13..]) : "",
                };
                Role = StreamRole.Responses;
                return true;
            }
            if (Role == StreamRole.Responses) return false;
            var sp1 = line.IndexOf((byte)' ');
            if (sp1 <= 0) return false;
            var method = line[..sp1];
            foreach (var c in method) if (!IsTokenChar(c)) return false;
            var rest = line[(sp1 + 1)..];
            var sp2 = rest.IndexOf((byte)' ');
            if (sp2 <= 0) return false;
            var target = rest[..sp2];
            var version = rest[(sp2 + 1)..];
            if (!IsVersion(version)) return false;
            foreach (var c in target) if (c <= 0x20 || c == 0x7f) return false;
            _current = new HttpMessage
            {
                IsRequest = true,
                Method = HttpStrings.Method(method),
                Target = Encoding.Latin1.GetString(target),
                Version = HttpStrings.Version(version),
            };
            Role = StreamRole.Requests;
            return true;
        }
        finally
        {
            if (rented is not null) ArrayPool<byte>.Shared.Return(rented);
        }
    }

    private bool TryAddHeader(in ReadOnlySequence<byte> lineSeq)
    {
        Span<byte> stack = stackalloc byte[512];
        var line = TrimCr(Flatten(lineSeq, stack, out var rented));
        try
        {
            var headers = _current!.Headers;
            if (line[0] is (byte)' ' or (byte)'\t')
            {
                // obsolete line folding: continues the previous value
                if (headers.Count == 0) return false;
                var last = headers[^1];
                headers[^1] = new(last.Key, last.Value + " " + Encoding.Latin1.GetString(Trim(line)));
                return true;
            }
            var colon = line.IndexOf((byte)':');
            if (colon <= 0) return false;
            var name = line[..colon];
            foreach (var c in name) if (!IsTokenChar(c)) return false;
            headers.Add(new(HttpStrings.HeaderName(name), Encoding.Latin1.GetString(Trim(line[(colon + 1)..]))));
            return true;
        }
        finally
        {
            if (rented is not null) ArrayPool<byte>.Shared.Return(rented);
        }
    }

    private static bool TryParseChunkSize(in ReadOnlySequence<byte> lineSeq, out long size)
    {
        size = 0;
        Span<byte> stack = stackalloc byte[MaxChunkLine + 1];
        if (lineSeq.Length > MaxChunkLine) return false;
        lineSeq.CopyTo(stack);
        var line = TrimCr(stack[..(int)lineSeq.Length]);
        var semi = line.IndexOf((byte)';');
        if (semi >= 0) line = line[..semi]; // chunk extensions are ignored
        line = Trim(line);
        if (line.Length == 0 || line.Length > 15) return false; // 15 hex digits: below 2^60
        foreach (var c in line)
        {
            int v = c switch
            {
                >= (byte)'0' and <= (byte)'9' => c - '0',
                >= (byte)'a' and <= (byte)'f' => c - 'a' + 10,
                >= (byte)'A' and <= (byte)'F' => c - 'A' + 10,
                _ => -1,
            };
            if (v < 0) return false;
            size = size * 16 + v;
        }
        return true;
    }

    private static bool TryParseContentLength(string value, out long length)
    {
        length = -1;
        // repeated identical values ("5, 5") are allowed; differing ones are not
        foreach (var part in value.Split(','))
        {
            var p = part.Trim();
            if (p.Length == 0 || p.Length > 18 || !p.All(char.IsAsciiDigit)) return false;
            var n = long.Parse(p);
            if (length >= 0 && n != length) return false;
            length = n;
        }
        return length >= 0;
    }

    private static ReadOnlySpan<byte> Flatten(in ReadOnlySequence<byte> seq, Span<byte> stack, out byte[]? rented)
    {
        rented = null;
        if (seq.IsSingleSegment) return seq.FirstSpan;
        var len = (int)seq.Length;
        var dest = len <= stack.Length ? stack : (rented = ArrayPool<byte>.Shared.Rent(len));
        seq.CopyTo(dest);
        return dest[..len];
    }

    private static bool IsBlank(in ReadOnlySequence<byte> line) =>
        line.Length == 0 || (line.Length == 1 && line.FirstSpan[0] == (byte)'\r');

    private static ReadOnlySpan<byte> TrimCr(ReadOnlySpan<byte> s) =>
        s.Length > 0 && s[^1] == (byte)'\r' ? s[..^1] : s;

    private static ReadOnlySpan<byte> Trim(ReadOnlySpan<byte> s)
    {
        int a = 0, b = s.Length;
        while (a < b && s[a] is (byte)' ' or (byte)'\t') a++;
        while (b > a && s[b - 1] is (byte)' ' or (byte)'\t') b--;
        return s[a..b];
    }

    private static bool IsVersion(ReadOnlySpan<byte> v) =>
        v.Length == 8 && v.StartsWith("HTTP/"u8) && IsDigit(v[5]) && v[6] == (byte)'.' && IsDigit(v[7]) && v[5] == (byte)'1';

    private static bool IsDigit(byte c) => c is >= (byte)'0' and <= (byte)'9';

    // RFC 9110 tchar
    private static bool IsTokenChar(byte c) =>
        c is >= (byte)'a' and <= (byte)'z' or >= (byte)'A' and <= (byte)'Z' or >= (byte)'0' and <= (byte)'9'
            or (byte)'!' or (byte)'#' or (byte)'$' or (byte)'%' or (byte)'&' or (byte)'\'' or (byte)'*'
            or (byte)'+' or (byte)'-' or (byte)'.' or (byte)'^' or (byte)'_' or (byte)'`' or (byte)'|' or (byte)'~';
}

/// <summary>Interned strings for the common tokens, so that a header line allocates only its value.</summary>
internal static class HttpStrings
{
    private static readonly string[] Methods = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE"];
    private static readonly string[] CommonHeaders =
    [
        "Host", "host", "User-Agent", "user-agent", "Accept", "accept", "Content-Type", "content-type",
        "Content-Length", "content-length", "Connection", "connection", "Server", "server", "Date", "date",
        "Transfer-Encoding", "transfer-encoding", "Content-Encoding", "content-encoding", "Accept-Encoding",
        "accept-encoding", "Cache-Control", "cache-control", "Keep-Alive", "keep-alive", "Authorization",
        "authorization", "Cookie", "cookie", "Set-Cookie", "set-cookie", "ETag", "etag", "Last-Modified",
        "last-modified", "Accept-Ranges", "accept-ranges", "Vary", "vary", "Location", "location",
    ];
    private static readonly byte[][] MethodBytes = Methods.Select(Encoding.ASCII.GetBytes).ToArray();
    private static readonly byte[][] HeaderBytes = CommonHeaders.Select(Encoding.ASCII.GetBytes).ToArray();

    public static string Method(ReadOnlySpan<byte> m)
    {
        for (var i = 0; i < MethodBytes.Length; i++)
            if (m.SequenceEqual(MethodBytes[i])) return Methods[i];
        return Encoding.ASCII.GetString(m);
    }

    public static string HeaderName(ReadOnlySpan<byte> n)
    {
        for (var i = 0; i < HeaderBytes.Length; i++)
            if (n.SequenceEqual(HeaderBytes[i])) return CommonHeaders[i];
        return Encoding.ASCII.GetString(n);
    }

    public static string Version(ReadOnlySpan<byte> v) =>
        v.SequenceEqual("HTTP/1.1"u8) ? "HTTP/1.1" : v.SequenceEqual("HTTP/1.0"u8) ? "HTTP/1.0" : Encoding.ASCII.GetString(v);
}
