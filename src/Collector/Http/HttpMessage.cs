using System.Buffers;

namespace Collector.Http;

/// <summary>One parsed HTTP/1.x request or response. Owns a pooled body buffer until Dispose.</summary>
public sealed class HttpMessage : IDisposable
{
    public bool IsRequest { get; init; }
    public string Method { get; init; } = "";
    public string Target { get; init; } = "";
    public string Version { get; init; } = "";
    public int StatusCode { get; init; }
    public string Reason { get; init; } = "";
    /// <summary>Headers as sent: names with their original case, in order, repeats kept.</summary>
    public List<KeyValuePair<string, string>> Headers { get; } = new();

    /// <summary>Kernel time (CLOCK_MONOTONIC ns) of the event that carried the first byte.</summary>
    public ulong FirstByteNs { get; set; }
    public ulong LastByteNs { get; set; }

    private byte[]? _body;
    public int BodyLength { get; private set; }
    /// <summary>Bytes of body the message declared or carried, including what was not kept.</summary>
    public long BodyTotalBytes { get; private set; }
    /// <summary>The body was longer than the cap: only BodyLength bytes were kept.</summary>
    public bool BodyTruncated { get; set; }
    /// <summary>Bytes of the body are missing (a gap in the capture): never present it as whole.</summary>
    public bool BodyHasGap { get; set; }
    /// <summary>The message ended with the connection before its framing said it was complete.</summary>
    public bool Incomplete { get; set; }

    public ReadOnlySpan<byte> Body => _body is null ? default : _body.AsSpan(0, BodyLength);

    public string? Header(string name)
    {
        string? value = null;
        foreach (var (k, v) in Headers)
        {
            if (!k.Equals(name, StringComparison.OrdinalIgnoreCase)) continue;
            value = value is null ? v : value + ", " + v;
        }
        return value;
    }

    internal void AppendBody(ReadOnlySequence<byte> data, int cap)
    {
        BodyTotalBytes += data.Length;
        var room = cap - BodyLength;
        if (room <= 0)
        {
            if (data.Length > 0) BodyTruncated = true;
            return;
        }
        var take = (int)Math.Min(room, data.Length);
        if (take < data.Length) BodyTruncated = true;
        Ensure(BodyLength + take);
        data.Slice(0, take).CopyTo(_body.AsSpan(BodyLength));
        BodyLength += take;
    }

    internal void SkipBody(long bytes)
    {
        BodyTotalBytes += bytes;
        BodyHasGap = true;
    }

    private void Ensure(int size)
    {
        if (_body is not null && _body.Length >= size) return;
        var next = ArrayPool<byte>.Shared.Rent(Math.Max(size, Math.Min(Math.Max(BodyLength * 2, 4096), int.MaxValue / 2)));
        if (_body is not null)
        {
            _body.AsSpan(0, BodyLength).CopyTo(next);
            ArrayPool<byte>.Shared.Return(_body);
        }
        _body = next;
    }

    /// <summary>Bytes this message holds in memory (its body buffer), for the memory budget.</summary>
    public int RetainedBytes => _body?.Length ?? 0;

    public void ReplaceBody(byte[] pooled, int length)
    {
        if (_body is not null) ArrayPool<byte>.Shared.Return(_body);
        _body = pooled;
        BodyLength = length;
    }

    public void Dispose()
    {
        if (_body is not null)
        {
            ArrayPool<byte>.Shared.Return(_body);
            _body = null;
        }
        BodyLength = 0;
    }
}
