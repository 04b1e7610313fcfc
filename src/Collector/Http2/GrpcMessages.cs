using System.Buffers.Binary;
using System.IO.Compression;
using Collector.Http;

namespace Collector.Http2;

/// <summary>One gRPC message as it will be sent: the 5-byte length prefix and the message, in a
/// pooled buffer. Compressed messages are already inflated (flag 0, new length).</summary>
internal struct GrpcMessage
{
    public byte[]? Buffer;
    public int Length;       // bytes kept, prefix included
    public bool Truncated;   // longer than the body cap: the prefix says the whole length
    public bool HasGap;      // bytes of it are missing from the capture

    public readonly ReadOnlySpan<byte> Bytes => Buffer is null ? default : Buffer.AsSpan(0, Length);

    public void Release()
    {
        if (Buffer is not null) BufferPool.Return(Buffer);
        Buffer = null;
        Length = 0;
    }
}

/// <summary>Cuts one direction of a gRPC stream's DATA into its length-prefixed messages
/// (gRPC over HTTP/2: a 1-byte compressed flag, a 4-byte big-endian length, the message).</summary>
internal sealed class GrpcMessageReader
{
    private readonly byte[] _prefix = new byte[5];
    private int _prefixLength;
    private long _remaining;      // bytes of the current message still to come
    private GrpcMessage _current;
    private bool _inMessage;
    private bool _lost;           // the framing is lost (a hole across a prefix) until a DATA frame starts a message
    private bool _atFrameStart;
    private const uint MaxPlausibleMessage = 64 << 20;
    /// <summary>Times the framing was found again after a loss.</summary>
    public int Resyncs { get; private set; }

    // Messages cut out and not yet taken: the oldest in the reader itself, the later ones (a
    // streaming call's backlog) in a list, so that a unary call's one message costs no list, whose
    // object and array are cold lines on a busy node.
    private GrpcMessage _oldest;
    private List<GrpcMessage>? _later;

    // What Retained reports, kept as buffers come and go: summing it at every event would read
    // each buffer's header, a cache miss apiece on a busy node.
    private int _retained;

    /// <summary>Messages cut out and not yet taken.</summary>
    public int Count { get; private set; }
    /// <summary>Messages this reader could not cut out (framing lost in a hole), counted by the session.</summary>
    public int LostMessages { get; private set; }
    public bool FramingLost => _lost;
    /// <summary>A message has begun and not ended.</summary>
    public bool Partial => _inMessage || _prefixLength > 0;

    /// <summary>Bytes of the pooled buffers this reader holds (the message being cut and those waiting).</summary>
    public int Retained => _retained;

    /// <summary>Tests: <see cref="Retained"/> summed from the buffers themselves.</summary>
    internal int RecountRetained()
    {
        var r = _current.Buffer?.Length ?? 0;
        if (Count > 0) r += _oldest.Buffer?.Length ?? 0;
        if (_later is not null) foreach (var m in _later) r += m.Buffer?.Length ?? 0;
        return r;
    }

    private void Add(GrpcMessage m)
    {
        if (Count == 0) _oldest = m;
        else (_later ??= new()).Add(m);
        Count++;
    }

    /// <summary>The oldest message cut out; its buffer is the caller's from now on.</summary>
    public GrpcMessage TakeOldest()
    {
        if (Count == 0) throw new InvalidOperationException("no gRPC message to take");
        var m = _oldest;
        if (Count > 1)
        {
            _oldest = _later![0];
            _later.RemoveAt(0);
        }
        else _oldest = default;
        Count--;
        _retained -= m.Buffer?.Length ?? 0;
        return m;
    }

    /// <summary>A DATA frame of this side begins: where gRPC writers start their messages, so where
    /// framing lost in a hole is looked for again.</summary>
    public void FrameStart() => _atFrameStart = true;

    public void Feed(ReadOnlySpan<byte> data, int cap, string? encoding)
    {
        var frameStart = _atFrameStart;
        _atFrameStart = false;
        if (_lost)
        {
            // a frame that begins with a plausible prefix (flag 0 or 1, a length gRPC allows)
            if (!frameStart || data.Length < 5 || data[0] > 1 || BinaryPrimitives.ReadUInt32BigEndian(data[1..5]) > MaxPlausibleMessage) return;
            _lost = false;
            Resyncs++;
        }
        while (!data.IsEmpty)
        {
            if (!_inMessage)
            {
                ReadOnlySpan<byte> prefix;
                if (_prefixLength == 0 && data.Length >= 5)
                {
                    prefix = data[..5]; // whole in this piece (the usual case): read where it lies
                    data = data[5..];
                }
                else
                {
                    var take = Math.Min(5 - _prefixLength, data.Length);
                    data[..take].CopyTo(_prefix.AsSpan(_prefixLength));
                    _prefixLength += take;
                    data = data[take..];
                    if (_prefixLength < 5) return;
                    _prefixLength = 0;
                    prefix = _prefix;
                }
                _remaining = BinaryPrimitives.ReadUInt32BigEndian(prefix[1..]);
                var keep = (int)Math.Min(_remaining, Math.Max(cap, 0));
                _current = new GrpcMessage { Buffer = BufferPool.Rent(5 + keep), Length = 5 };
                _retained += _current.Buffer.Length;
                prefix.CopyTo(_current.Buffer);
                _inMessage = true;
                if (_remaining == 0) End(cap, encoding);
                continue;
            }
            var n = (int)Math.Min(_remaining, data.Length);
            var room = _current.Buffer!.Length - _current.Length;
            var copy = Math.Min(room, n);
            if (copy > 0 && !_current.HasGap) data[..copy].CopyTo(_current.Buffer.AsSpan(_current.Length));
            if (!_current.HasGap) _current.Length += copy;
            if (copy < n) _current.Truncated = true;
            _remaining -= n;
            data = data[n..];
            if (_remaining == 0) End(cap, encoding);
        }
    }

    /// <summary>Bytes of this direction's DATA are missing. Inside a message of known length the
    /// reader stays in step (the message is marked); a hole across a prefix loses the framing.</summary>
    public void OnGap(long bytes, int cap, string? encoding)
    {
        if (_lost) return;
        if (_inMessage && bytes <= _remaining)
        {
            _current.HasGap = true;
            _remaining -= bytes;
            if (_remaining == 0) End(cap, encoding);
            return;
        }
        LoseFraming();
    }

    /// <summary>The framing can no longer be followed (a hole across a prefix, or DATA whose
    /// place is unknown).</summary>
    public void LoseFraming()
    {
        if (_lost) return;
        _lost = true;
        if (_inMessage || _prefixLength > 0) LostMessages++;
        ReleaseCurrent();
        _inMessage = false;
        _prefixLength = 0;
    }

    /// <summary>The stream ended: a message cut short by the end is handed on marked.</summary>
    public void OnEnd()
    {
        if (_inMessage)
        {
            _current.HasGap = true;
            Add(_current);
            _current = default;
            _inMessage = false;
        }
        else if (_prefixLength > 0)
        {
            LostMessages++;
            _prefixLength = 0;
        }
    }

    private void End(int cap, string? encoding)
    {
        _inMessage = false;
        var m = _current;
        _current = default;
        if (m.Buffer![0] == 1 && !m.Truncated && !m.HasGap && encoding is not null)
        {
            var before = m.Buffer.Length;
            m = Inflate(m, cap, encoding);
            _retained += m.Buffer!.Length - before;
        }
        Add(m);
    }

    /// <summary>A compressed message (flag 1) inflated, flag cleared and length rewritten, so the
    /// processor reads protobuf after the 5 bytes; left as it came when the coding is unknown or
    /// the bytes do not inflate.</summary>
    private static GrpcMessage Inflate(GrpcMessage m, int cap, string encoding)
    {
        var body = m.Buffer.AsSpan(5, m.Length - 5);
        byte[]? output = null;
        try
        {
            using var input = new MemoryStream(m.Buffer!, 5, m.Length - 5, writable: false);
            using Stream inflater = encoding switch
            {
                "gzip" => new GZipStream(input, CompressionMode.Decompress),
                "deflate" => new ZLibStream(input, CompressionMode.Decompress),
                _ => throw new InvalidDataException("unknown grpc-encoding"),
            };
            output = BufferPool.Rent(5 + Math.Min(cap, Math.Max(body.Length * 4, 256)));
            var length = 5;
            var truncated = false;
            while (true)
            {
                if (length - 5 >= cap)
                {
                    truncated = inflater.ReadByte() >= 0; // (pooled buffers are larger than asked)
                    break;
                }
                if (length == output.Length)
                {
                    var bigger = BufferPool.Rent(Math.Min(5 + cap, output.Length * 2));
                    output.AsSpan(0, length).CopyTo(bigger);
                    BufferPool.Return(output);
                    output = bigger;
                }
                var read = inflater.Read(output, length, Math.Min(output.Length, 5 + cap) - length);
                if (read == 0) break;
                length += read;
            }
            output[0] = 0;
            BinaryPrimitives.WriteUInt32BigEndian(output.AsSpan(1), (uint)(length - 5));
            m.Release();
            return new GrpcMessage { Buffer = output, Length = length, Truncated = truncated };
        }
        catch (Exception e) when (e is InvalidDataException or IOException)
        {
            if (output is not null) BufferPool.Return(output);
            return m; // sent as it came (flag 1): the processor sees what was on the wire
        }
    }

    public void Release()
    {
        ReleaseCurrent();
        _current = default;
        if (Count > 0) _oldest.Release();
        _oldest = default;
        if (_later is not null)
        {
            foreach (var m in _later) m.Release();
            _later.Clear();
        }
        Count = 0;
        _retained = 0;
    }

    private void ReleaseCurrent()
    {
        _retained -= _current.Buffer?.Length ?? 0;
        _current.Release();
    }

    /// <summary>Back to a new stream's start (the reader is reused with its stream object).</summary>
    public void Reset()
    {
        Release();
        _prefixLength = 0;
        _remaining = 0;
        _inMessage = _lost = _atFrameStart = false;
        LostMessages = Resyncs = 0;
    }
}
